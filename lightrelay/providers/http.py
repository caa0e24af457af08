"""What every HTTP provider shares: time limits, the key ring, POST with key failover, SSE reading,
and the mapping of an upstream's error answer onto the error tree.

Time limits (seconds, per channel): ``connect`` for the TCP (and TLS) connection;
``first_byte`` until the response headers (and, for a stream, its first event)
arrive; ``idle``, the longest silence allowed between two reads of a stream once
it has started (an upstream trickling bytes is not idle, but ``total`` still
bounds it); ``total`` for the whole call, body included (the channel's
``timeout`` column, else the global default).

A provider subclass says where a call goes (``_headers`` for a key) and translates bodies; the
upstream's answer is mapped here: 400/413/422 are the caller's (``BadRequest``, no failover), any
other status may fail over (``UpstreamError``), and a key refused for good (401/403, quota or
balance exhausted, see ``keys.retire_reason``) is retired and the next key tried at once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from lightrelay.errors import BadRequest, UpstreamError, UpstreamFailure, UpstreamTimeout
from lightrelay.providers.base import ChatCall
from lightrelay.providers.keys import KeyRing, retire_reason


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    first_byte: float = 60.0
    idle: float = 60.0
    total: float = 600.0


_SECRETS = re.compile(r"(?i)(bearer\s+)[^\s'\"]+|\bsk-[A-Za-z0-9_\-]{8,}|\bAIza[0-9A-Za-z_\-]{20,}")


KEY_PIECE = 8  # this many characters of a channel's key in a row count as the key
SCRUB_WINDOW = 16384  # an error body is scrubbed this far, and only then cut to 300 characters


def _mask_pieces(text: str, secret: str) -> str:
    """Mask every run of ``text`` made of pieces (KEY_PIECE characters or more) of ``secret``: a key
    repeated cut, or only in part, is caught too."""
    n = min(KEY_PIECE, len(secret))
    spans: list[tuple[int, int]] = []
    for i in range(len(secret) - n + 1):
        piece = secret[i:i + n]
        at = text.find(piece)
        while at != -1:
            spans.append((at, at + n))
            at = text.find(piece, at + 1)
    if not spans:
        return text
    spans.sort()
    out, last, (start, end) = [], 0, spans[0]
    for s, e in spans[1:]:
        if s <= end:
            end = max(end, e)
            continue
        out += [text[last:start], "***"]
        last, (start, end) = end, (s, e)
    out += [text[last:start], "***", text[end:]]
    return "".join(out)


def scrub(text: str, secret: str | None = None) -> str:
    """``text`` without API keys in it: an upstream's error may repeat the key it was sent, whole or in
    part. Scrub the whole text before cutting it: a key cut in two no longer matches."""
    if secret:
        text = _mask_pieces(text, secret)
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "***", text)


def upstream_message(body: bytes, secret: str | None = None) -> str:
    """The message of an upstream's error body (OpenAI, Anthropic and Gemini all use ``error.message``)."""
    try:
        err = orjson.loads(body)
        if isinstance(err, list) and err:  # Gemini's stream endpoint wraps its error in a list
            err = err[0]
        err = err.get("error")
        text = str(err.get("message", "")) if isinstance(err, dict) else str(err)
    except Exception:
        text = body[:SCRUB_WINDOW].decode("utf-8", "replace")
    return scrub(text, secret)[:300]


def status_error(status: int, body: bytes, secret: str | None = None) -> UpstreamFailure | BadRequest:
    """Map an upstream's non-200 answer: 400/413/422 are the caller's fault, the rest may fail over."""
    detail = upstream_message(body, secret)
    if status in (400, 413, 422):
        return BadRequest(f"上游拒绝了请求: {detail}", f"the upstream rejected the request: {detail}")
    return UpstreamError(f"上游返回 {status}: {detail}", f"upstream answered {status}: {detail}")


def _why(exc: aiohttp.ClientError) -> str:
    """The error's kind, with the operating system's reason when there is one (``ClientOSError: [Errno
    104] Connection reset by peer``): what an operator needs to tell a dead host from a full port range."""
    os_error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    reason = getattr(os_error, "strerror", None)
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def broken(what: str = "reply") -> UpstreamError:
    return UpstreamError("上游返回了无法解析的内容", f"the upstream sent a broken {what}")


def event_object(payload: bytes) -> dict[str, Any]:
    """One streamed event's JSON object, or the UpstreamError for a broken one."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise broken("event") from exc
    if not isinstance(event, dict):
        raise UpstreamError("上游返回了无法解析的内容", "the upstream sent an event that is not an object")
    return event


class HttpProvider:
    """The base of the HTTP providers; see the module docstring."""

    kind = "http"

    def __init__(self, session: aiohttp.ClientSession, *, keys: KeyRing, timeouts: Timeouts) -> None:
        self._session = session
        self.keys = keys
        self.timeouts = timeouts
        self._default_timeout = self._make_timeout(timeouts.total)  # built once, not per call

    # -- hooks -----------------------------------------------------------------------------------
    def _headers(self, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    def _error(self, status: int, body: bytes, secret: str | None) -> UpstreamFailure | BadRequest:
        return status_error(status, body, secret)

    # -- HTTP ------------------------------------------------------------------------------------
    def _make_timeout(self, total: float) -> aiohttp.ClientTimeout:
        t = self.timeouts
        # sock_read bounds the wait for the headers and each read of a whole body; a stream lifts it
        # once the headers are in and times its own reads (first event, then idle gaps).
        return aiohttp.ClientTimeout(total=total, connect=t.connect, sock_read=t.first_byte)

    def _timeout(self, call: ChatCall | None) -> aiohttp.ClientTimeout:
        if call is None or call.timeout is None or call.timeout == self.timeouts.total:
            return self._default_timeout
        return self._make_timeout(call.timeout)

    async def _send(self, method: str, url: str, call: ChatCall | None, data: bytes | None = None
                    ) -> tuple[aiohttp.ClientResponse, str | None]:
        """Send with the next live key; a key the upstream refuses for good is retired and the next one
        tried. Returns the 200 response and the key it was sent with."""
        for _ in range(max(1, len(self.keys))):
            key = self.keys.pick()
            secret = key.secret if key is not None else None
            try:
                resp = await self._open(method, url, data, self._headers(secret), call)
            except TimeoutError as exc:
                raise UpstreamTimeout("上游响应超时", "the upstream timed out") from exc
            except aiohttp.ClientError as exc:
                why = _why(exc)
                raise UpstreamError(f"无法连接上游: {why}", f"cannot reach the upstream: {why}") from exc
            if resp.status == 200:
                return resp, secret
            try:
                body = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                resp.release()
            reason = retire_reason(resp.status, body) if key is not None else None
            if reason is None:
                raise self._error(resp.status, body, secret)
            self.keys.retire(key, f"{reason}: {upstream_message(body, secret)[:120]}")  # type: ignore[arg-type]
        self.keys.pick()  # raises: every key is retired now
        raise UpstreamError("上游拒绝了所有密钥", "the upstream refused every key")  # pragma: no cover

    async def _open(self, method: str, url: str, data: bytes | None, headers: dict[str, str],
                    call: ChatCall | None) -> aiohttp.ClientResponse:
        """One request, sent again once, on a new connection, if the kept-alive connection it went out on
        had been closed by the upstream (an idle timeout on its side): the request could not be written,
        or the connection was reset. Not when connecting fails, nor when the upstream took the request
        and hung up without an answer (it may have acted on it: that fails over like any failure)."""
        timeout = self._timeout(call)
        try:
            return await self._session.request(method, url, data=data, headers=headers, timeout=timeout)
        except aiohttp.ClientOSError as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                raise
        return await self._session.request(method, url, data=data, headers=headers, timeout=timeout)

    async def _json(self, resp: aiohttp.ClientResponse) -> Any:
        try:
            return orjson.loads(await resp.read())
        except TimeoutError as exc:
            raise UpstreamTimeout("上游响应超时", "the upstream timed out") from exc
        except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            raise broken() from exc
        finally:
            resp.release()

    async def _events(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The ``data:`` payloads of a server-sent-event stream as they arrive; returns at the end of the
        body (the caller decides whether the stream was complete). The first payload must come within
        ``first_byte`` seconds, then no gap may exceed ``idle``."""
        if resp.connection is not None and resp.connection.protocol is not None:
            resp.connection.protocol.read_timeout = None  # timed below instead
        first_by = asyncio.get_running_loop().time() + self.timeouts.first_byte
        buf = bytearray()
        while True:
            end = buf.find(b"\n")
            if end < 0:
                try:
                    limit = asyncio.timeout_at(first_by) if first_by else asyncio.timeout(self.timeouts.idle)
                    async with limit:
                        data = await resp.content.readany()
                except TimeoutError as exc:
                    raise UpstreamTimeout("上游响应超时", "the upstream stalled or took too long") from exc
                except aiohttp.ClientError as exc:
                    raise UpstreamError("上游连接中断", "the upstream connection broke") from exc
                if not data:
                    if buf.strip().startswith(b"data:"):  # a last event without its newline
                        yield bytes(buf).strip()[5:].strip()
                    return
                buf += data
                continue
            line = bytes(buf[:end])
            del buf[:end + 1]
            if line.startswith(b"data:"):  # blank separators, comments and event: lines are skipped
                first_by = 0.0
                yield line[5:].strip()

    @staticmethod
    def _finish(resp: aiohttp.ClientResponse, done: bool) -> None:
        """A finished stream hands its connection back to the pool; anything else drops it, which also
        cancels the upstream call."""
        if done:
            resp.release()
        else:
            resp.close()

    async def close(self) -> None:
        """The session is owned by the app, not by one provider."""
