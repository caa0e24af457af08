"""A small client of the light protocol (``POST /api/light/chat/createChatCompletion``).

``lightrelay chat`` uses :func:`chat`. A light stream body is::

    start852{header json}end852<reply text, delta by delta>[start852{usage or error json}end852]

:class:`LightFrameParser` cuts such a body into events however its bytes are split
across reads (a frame or a UTF-8 character split anywhere).
"""

from __future__ import annotations

import codecs
import sys
from typing import Any, TextIO

import aiohttp
import orjson

__all__ = ["LightError", "LightFrameParser", "chat", "CHAT_PATH"]

CHAT_PATH = "/api/light/chat/createChatCompletion"
START = "start852"
END = "end852"

Event = tuple[str, Any]
"""``("header", dict)`` for the first frame, ``("text", str)``, ``("frame", dict)`` for later frames."""


class LightError(Exception):
    """A light-protocol error seen by the client: an error envelope or an error frame."""

    def __init__(self, code: int, message: str, partial: dict | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.partial = partial  # for a stream that failed midway: what had arrived


def _marker_prefix_len(text: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``start852``."""
    for k in range(min(len(START) - 1, len(text)), 0, -1):
        if text.endswith(START[:k]):
            return k
    return 0


class LightFrameParser:
    """Incremental parser of a light stream body: ``feed(bytes)`` then ``close()``.

    Text is emitted as soon as it cannot be the beginning of a ``start852`` marker.
    A frame ends at the first ``}end852`` after which the JSON parses (so a JSON string
    containing ``}end852`` does not end the frame early).
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""  # undecided text, or the JSON of the current frame so far
        self._in_frame = False
        self._scan_from = 0  # where to look for "}end852" next inside a frame
        self._frames_seen = 0

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next bytes of the body; returns the events they complete."""
        self._buf += self._decoder.decode(data)
        return self._drain()

    def close(self) -> list[Event]:
        """End of body: returns the remaining events; ``ValueError`` if a frame was left open."""
        self._buf += self._decoder.decode(b"", final=True)
        events = self._drain()
        if self._in_frame:
            raise ValueError("light stream ended inside a start852 frame")
        if self._buf:
            events.append(("text", self._buf))
            self._buf = ""
        return events

    def _drain(self) -> list[Event]:
        events: list[Event] = []
        while True:
            if self._in_frame:
                frame = self._take_frame()
                if frame is None:
                    return events
                kind = "header" if self._frames_seen == 0 else "frame"
                self._frames_seen += 1
                events.append((kind, frame))
                continue
            start = self._buf.find(START)
            if start < 0:
                keep = _marker_prefix_len(self._buf)
                text, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
                if text:
                    events.append(("text", text))
                return events
            if start:
                events.append(("text", self._buf[:start]))
            self._buf = self._buf[start + len(START) :]
            self._in_frame, self._scan_from = True, 0

    def _take_frame(self) -> Any:
        """The current frame's JSON if its end has arrived (consuming it), else None."""
        while True:
            end = self._buf.find("}" + END, self._scan_from)
            if end < 0:
                self._scan_from = max(0, len(self._buf) - len(END))
                return None
            try:
                frame = orjson.loads(self._buf[: end + 1])
            except orjson.JSONDecodeError:
                self._scan_from = end + 1
                continue
            self._buf = self._buf[end + 1 + len(END) :]
            self._in_frame = False
            return frame


def _error_from_envelope(status: int, raw: bytes) -> LightError:
    try:
        env = orjson.loads(raw)
        return LightError(int(env.get("code") or status), str(env.get("message") or ""))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return LightError(status, raw[:300].decode("utf-8", "replace").strip() or f"HTTP {status}")


def _error_from_frame(frame: dict, partial: dict) -> LightError:
    err = frame.get("error")
    if not isinstance(err, dict):
        err = {"message": str(err)}
    code = err.get("code") if isinstance(err.get("code"), int) else 502
    return LightError(code, str(err.get("message") or err.get("type") or "upstream error"), partial)


async def chat(
    base_url: str,
    token: str,
    prompt: str,
    *,
    model: str | None = None,
    stream: bool = False,
    include_usage: bool = False,
    out: TextIO | None = None,
    timeout: float = 600.0,
) -> dict:
    """Ask the relay at ``base_url`` (e.g. ``http://127.0.0.1:8080``) one question.

    Non-stream: prints the reply to ``out`` (default ``sys.stdout``) and returns the
    ``{code, data, message}`` envelope. Stream: writes the text to ``out`` as it arrives
    and returns ``{"header": dict, "text": str, "frames": [dict, ...]}``.
    Raises :class:`LightError` for an error envelope or an error frame.
    """
    out = out if out is not None else sys.stdout
    params: dict[str, Any] = {"stream": stream}
    if include_usage:
        params["include_usage"] = True
    body: dict[str, Any] = {"token": token, "messages": [{"role": "user", "content": prompt}], "params": params}
    if model:
        body["model"] = model
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=30)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.post(base_url.rstrip("/") + CHAT_PATH, data=orjson.dumps(body), headers=headers) as resp,
    ):
        is_json = resp.content_type == "application/json"
        if resp.status != 200 or (stream and is_json):
            raise _error_from_envelope(resp.status, await resp.read())
        if not stream:
            envelope = orjson.loads(await resp.read())
            if envelope.get("code") != 200:
                raise LightError(int(envelope.get("code") or 500), str(envelope.get("message") or ""))
            choices = envelope["data"]["completion"]["choices"]
            out.write(((choices[0]["message"].get("content") or "") if choices else "") + "\n")
            out.flush()
            return envelope
        result: dict[str, Any] = {"header": None, "text": "", "frames": []}
        parser = LightFrameParser()
        async for data in resp.content.iter_any():
            _apply(parser.feed(data), result, out)
        try:
            _apply(parser.close(), result, out)
        except ValueError as exc:
            raise LightError(502, str(exc), result) from None
        return result


def _apply(events: list[Event], result: dict, out: TextIO) -> None:
    """Fold parser events into ``result``, writing text to ``out``; raise on an error frame."""
    for kind, value in events:
        if kind == "text":
            result["text"] += value
            out.write(value)
            out.flush()
            continue
        if kind == "header":
            result["header"] = value
        else:
            result["frames"].append(value)
        if isinstance(value, dict) and "error" in value:
            raise _error_from_frame(value, result)
