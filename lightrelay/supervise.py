"""Background tasks that are started again when they die.

``Supervised(name, make)`` runs ``make()`` (a coroutine function) as a task; if it
raises, the failure is logged with its traceback, ``up`` is False (with ``reason``)
for ``restart_seconds``, and a fresh ``make()`` runs. ``/readyz`` shows the state of
each. ``stop()`` cancels it and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("lightrelay")


class Supervised:
    def __init__(self, name: str, make: Callable[[], Coroutine[Any, Any, None]], *,
                 restart_seconds: float = 1.0) -> None:
        self.name = name
        self._make = make
        self._restart_seconds = restart_seconds
        self._task: asyncio.Task[None] | None = None
        self.reason: str | None = None
        self.restarts = 0

    @property
    def up(self) -> bool:
        return self._task is not None and not self._task.done() and self.reason is None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep(), name=self.name)

    async def _keep(self) -> None:
        while True:
            try:
                await self._make()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.reason = f"{type(exc).__name__}: {exc}"[:300]
                log.error("background task %s died; restarting it in %.0f s", self.name, self._restart_seconds,
                          exc_info=exc)
            await asyncio.sleep(self._restart_seconds)
            self.restarts += 1
            self.reason = None

    async def join(self) -> None:
        """Wait until it has finished by itself."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
