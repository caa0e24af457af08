"""Reading bodies (with the size limit) and writing live streams (raw ASGI, stopped when the client leaves)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from lightrelay.errors import BadRequest, ClientGone, PayloadTooLarge, RelayError
from lightrelay.http.server import HANG_UP
from lightrelay.relay import RelayStream

T = TypeVar("T")
log = logging.getLogger("lightrelay.http")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"请求体太大（上限 {limit} 字节）", f"request body too large (limit {limit} bytes)")


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body; 413 over ``limit`` bytes, 400 if it is not JSON; ClientGone (logged at
    INFO, no traceback: an ordinary event) if the client hangs up before it is all sent."""
    try:
        return _parse(await _read_body(request, limit))
    except ClientDisconnect:
        log.info("the client hung up while sending its request body (%s)", request.url.path)
        raise ClientGone("客户端已断开", "the client went away") from None


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise BadRequest("Content-Length 无效", "invalid Content-Length")
        if int(length) > limit:
            raise _too_large(limit)
        body = await request.body()
    else:
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise _too_large(limit)
            parts.append(part)
        body = b"".join(parts)
    return body


def _parse(body: bytes) -> Any:
    if not body:
        raise BadRequest("请求体为空，应为 JSON", "the request body is empty; JSON expected")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise _too_deep() from None
        raise BadRequest("请求体不是合法的 JSON", "the request body is not valid JSON (UTF-8)") from None
    if isinstance(data, (dict, list)):
        try:  # what cannot be written back (nested past orjson's 254 levels) can never reach an upstream
            orjson.dumps(data)
        except TypeError:  # orjson.JSONEncodeError
            raise _too_deep() from None
    return data


def _too_deep() -> BadRequest:
    return BadRequest("请求体 JSON 嵌套太深", "the request body's JSON is nested too deeply", code="json_too_deep")


class _HangUp:
    """Cancels the task that made it if the client goes away meanwhile. Under ``lightrelay serve`` the
    protocol says so itself (``server.HangUp``: no task); under another server a task of its own waits
    for ``http.disconnect``. The work stays in the request's task, so it starts at once instead of one
    event-loop turn later (on an idle machine a turn is far from free)."""

    __slots__ = ("gone", "_task", "_hook", "_watcher")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.gone = False
        self._task = asyncio.current_task()
        self._hook = scope.get(HANG_UP)
        self._watcher: asyncio.Future | None = None
        if self._hook is not None:
            self._hook.on_gone(self._left)
        else:
            self._watcher = asyncio.ensure_future(self._watch(receive))
            self._watcher.add_done_callback(self._heard)

    @staticmethod
    async def _watch(receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    def _heard(self, watcher: asyncio.Future) -> None:
        if not watcher.cancelled() and watcher.exception() is None:
            self._left()

    def _left(self) -> None:
        if self._task is not None:
            self.gone = True
            self._task.cancel()

    def stop(self) -> None:
        """The work is over: whatever is heard from now on cancels nothing."""
        self._task = None
        if self._hook is not None:
            self._hook.on_gone(None)
        elif self._watcher is not None:
            self._watcher.cancel()

    def absorb(self) -> bool:
        """In an ``except CancelledError``: True (and the cancellation withdrawn) if it was the
        client's hang-up, False if someone else cancelled the request."""
        if self.gone:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        return self.gone


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` (the body already read), cancelling it if the client hangs up meanwhile:
    a caller who left stops the upstream call at once instead of after its timeouts."""
    hang_up = _HangUp(request.scope, request.receive)
    try:
        return await work
    except asyncio.CancelledError:
        if not hang_up.absorb():
            raise  # this request itself was cancelled, not left by its caller
        raise ClientGone("客户端已断开", "the client went away") from None
    finally:
        hang_up.stop()


class LiveStream(Response):
    """Streams ``body`` as it is produced, each piece one ``send``; a client that goes away
    cancels the producer at once (and so the upstream call behind it).

    ``stream`` is the RelayStream behind the body: whatever way the response ends, it is closed
    (settled or refunded, recorded) before this returns. When the server itself cuts the response
    (its shutdown grace period is over), ``abort`` — the door's own error frame — is written last,
    so the caller never mistakes the cut for the end of the reply, and the call is refunded."""

    def __init__(self, body: AsyncIterator[bytes], *, media_type: str, headers: dict[str, str],
                 stream: RelayStream | None = None, abort: bytes = b"") -> None:
        self.status_code = 200
        self.background = None
        self._body = body
        self._stream = stream
        self._abort = abort
        self.raw_headers = [(b"content-type", media_type.encode())]
        self.raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hang_up = _HangUp(scope, receive)
        if self._stream is not None:
            self._stream.client_left = lambda: hang_up.gone
        cut = False
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for piece in self._body:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not hang_up.absorb():  # cancelled by the server, not left by the client
                cut = True
                if self._stream is not None:
                    self._stream.cut = True
        except OSError:  # the connection broke under a write
            pass
        finally:
            hang_up.stop()
            with contextlib.suppress(Exception):
                await self._body.aclose()  # type: ignore[attr-defined]
            if self._stream is not None:
                await self._stream.close()
            if cut and self._abort:
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": self._abort, "more_body": False})


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


async def translated(stream: RelayStream, events: Any,
                     on_error: Callable[[RelayError], bytes]) -> AsyncIterator[bytes]:
    """A chat stream re-spoken by a translating door (Messages, Responses): ``events`` turns the chat
    chunks into its own wire events (``start`` / ``feed`` / ``finish``); an upstream failure after the
    start ends the stream with ``on_error(exc)``, the door's own error event."""
    yield events.start()
    try:
        async with contextlib.aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                piece = events.feed(chunk)
                if piece:
                    yield piece
    except RelayError as exc:
        yield on_error(exc)
        return
    yield events.finish(stream.totals())
