"""A channel's upstream API keys: used round-robin; a key the upstream refuses for good retires itself.

A key is retired when the upstream answers 401/403 with it, or says its quota or balance is
used up (``retire_reason`` decides). The call then moves on to the next key before any byte
reaches the caller. Retirement is kept in memory at once and stored through ``store`` (the app
hands in a function that writes it to the database), so every process and the CLI see it; a key
put back (``channel enable-key``) comes back on the next reload (``sync``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lightrelay.errors import Unavailable

log = logging.getLogger("lightrelay.keys")

# an upstream's words for "this key has no money or quota left" (not: "slow down")
_EXHAUSTED = re.compile(
    r"insufficient[_ ]quota|exceeded your current quota|quota (?:has been )?exhausted|credit balance|"
    r"balance is too low|insufficient (?:balance|credit|funds)|billing|payment required|余额不足|额度已用尽|欠费",
    re.IGNORECASE)
_BAD_KEY = re.compile(r"API_KEY_INVALID|API key not valid|invalid[_ ]api[_ ]key|invalid x-api-key", re.IGNORECASE)


def retire_reason(status: int, body: bytes) -> str | None:
    """Why a key should be retired after this answer, or None if the key is not to blame."""
    text = body[:2000].decode("utf-8", "replace")
    if status in (401, 403):
        return f"rejected by the upstream ({status})"
    if status == 400 and _BAD_KEY.search(text):  # Gemini answers a bad key with 400 API_KEY_INVALID
        return "rejected by the upstream (invalid key)"
    if status == 402 or (status in (400, 429) and _EXHAUSTED.search(text)):
        return f"quota or balance exhausted ({status})"
    return None


@dataclass(slots=True)
class Key:
    position: int
    secret: str
    retired: str | None = None  # the reason, while retired
    pending: bool = False  # retired here, not yet stored


class KeyRing:
    """The keys of one channel. An empty ring is a channel without a key (``pick`` gives None)."""

    def __init__(self, keys: list[Key], *, channel: str = "",
                 store: Callable[[int, str], Awaitable[Any]] | None = None) -> None:
        self.keys = keys
        self.channel = channel
        self._store = store
        self._next = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def usable(self) -> bool:
        return not self.keys or any(k.retired is None for k in self.keys)

    def pick(self) -> Key | None:
        """The next live key, round-robin; None for a keyless channel; Unavailable if all are retired."""
        keys = self.keys
        if not keys:
            return None
        n = len(keys)
        for i in range(n):
            key = keys[(self._next + i) % n]
            if key.retired is None:
                self._next = (self._next + i + 1) % n
                return key
        raise Unavailable("该渠道的所有密钥都已停用", f"every API key of channel {self.channel} is retired",
                          retry_after=60)

    def retire(self, key: Key, reason: str) -> None:
        if key.retired is not None:
            return
        key.retired, key.pending = reason, True
        log.warning("channel %s: key #%d retired: %s", self.channel, key.position + 1, reason)
        if self._store is None:
            return
        task = asyncio.get_running_loop().create_task(self._stored(key, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stored(self, key: Key, reason: str) -> None:
        try:
            await self._store(key.position, reason)  # type: ignore[misc]
        except Exception:
            log.exception("channel %s: storing the retirement of key #%d failed", self.channel, key.position + 1)
        finally:
            key.pending = False

    def sync(self, stored: dict[int, str | None]) -> None:
        """Apply the stored states (position -> reason or None) after a reload; a retirement not yet
        stored stays."""
        for key in self.keys:
            reason = stored.get(key.position)
            if reason is not None:
                key.retired, key.pending = reason, False
            elif not key.pending:
                key.retired = None
