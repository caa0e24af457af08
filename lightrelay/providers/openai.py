"""The ``openai`` provider: any OpenAI-compatible HTTP API, over one shared aiohttp session.

Time limits (seconds, per channel): ``connect`` for the TCP (and TLS) connection;
``first_byte`` until the response headers (and, for a stream, its first event)
arrive; ``idle``, the longest silence allowed between two reads of a stream once
it has started (an upstream trickling bytes is not idle, but ``total`` still
bounds it); ``total`` for the whole call, body included (the channel's
``timeout`` column, else the global default).
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


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    first_byte: float = 60.0
    idle: float = 60.0
    total: float = 600.0


_SECRETS = re.compile(r"(?i)(bearer\s+)[^\s'\"]+|\bsk-[A-Za-z0-9_\-]{8,}")


def scrub(text: str, secret: str | None = None) -> str:
    """``text`` without API keys in it: an upstream's error may repeat the key it was sent."""
    if secret:
        text = text.replace(secret, "***")
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "***", text)


def _upstream_message(body: bytes, secret: str | None = None) -> str:
    try:
        err = orjson.loads(body).get("error")
        text = str(err.get("message", "")) if isinstance(err, dict) else str(err)
    except Exception:
        text = body[:300].decode("utf-8", "replace")
    return scrub(text, secret)[:300]


def status_error(status: int, body: bytes, secret: str | None = None) -> UpstreamFailure | BadRequest:
    """Map an upstream's non-200 answer: 400/422 is the caller's fault, the rest may fail over."""
    detail = _upstream_message(body, secret)
    if status in (400, 422):
        return BadRequest(f"上游拒绝了请求: {detail}", f"the upstream rejected the request: {detail}")
    return UpstreamError(f"上游返回 {status}: {detail}", f"upstream answered {status}: {detail}")


class OpenAIProvider:
    kind = "openai"

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, api_key: str | None,
                 timeouts: Timeouts) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._url = self._base + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._secret = api_key
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.timeouts = timeouts
        self._default_timeout = self._make_timeout(timeouts.total)  # built once, not per call

    def _make_timeout(self, total: float) -> aiohttp.ClientTimeout:
        t = self.timeouts
        # sock_read bounds the wait for the headers and each read of a whole body; a stream lifts it
        # once the headers are in and times its own reads (first event, then idle gaps).
        return aiohttp.ClientTimeout(total=total, connect=t.connect, sock_read=t.first_byte)

    def _timeout(self, call: ChatCall, stream: bool) -> aiohttp.ClientTimeout:
        if call.timeout is None or call.timeout == self.timeouts.total:
            return self._default_timeout
        return self._make_timeout(call.timeout)

    async def _post(self, call: ChatCall, body: dict[str, Any], *, stream: bool = False,
                    url: str | None = None) -> aiohttp.ClientResponse:
        try:
            resp = await self._session.post(
                url or self._url, data=orjson.dumps(body), headers=self._headers, timeout=self._timeout(call, stream)
            )
        except TimeoutError as exc:
            raise UpstreamTimeout("上游响应超时", "the upstream timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"无法连接上游: {type(exc).__name__}",
                                f"cannot reach the upstream: {type(exc).__name__}") from exc
        if resp.status != 200:
            try:
                body_bytes = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                body_bytes = b""
            finally:
                resp.release()
            raise status_error(resp.status, body_bytes, self._secret)
        return resp

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        resp = await self._post(call, {"model": call.model, "messages": call.messages, **call.params})
        try:
            data = orjson.loads(await resp.read())
        except TimeoutError as exc:
            raise UpstreamTimeout("上游响应超时", "the upstream timed out") from exc
        except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            raise UpstreamError("上游返回了无法解析的内容", "the upstream sent a broken reply") from exc
        finally:
            resp.release()
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamError("上游返回了无法解析的内容", "the upstream sent a reply without choices")
        data["model"] = call.public_model
        return data

    async def stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        body = {"model": call.model, "messages": call.messages, **call.params,
                "stream": True, "stream_options": {"include_usage": True}}
        resp = await self._post(call, body, stream=True)
        if resp.connection is not None and resp.connection.protocol is not None:
            resp.connection.protocol.read_timeout = None  # timed below instead
        first_by = asyncio.get_running_loop().time() + self.timeouts.first_byte
        buf = bytearray()
        done = False
        try:
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
                        raise UpstreamError("上游流意外结束", "the upstream stream ended before [DONE]")
                    buf += data
                    continue
                line = bytes(buf[:end])
                del buf[:end + 1]
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments, event: lines
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    return
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError as exc:
                    raise UpstreamError("上游返回了无法解析的内容", "the upstream sent a broken event") from exc
                if not isinstance(chunk, dict):
                    raise UpstreamError("上游返回了无法解析的内容", "the upstream sent an event that is not an object")
                if "error" in chunk and "choices" not in chunk:
                    detail = _upstream_message(payload, self._secret)
                    raise UpstreamError(f"上游出错: {detail}", f"the upstream failed: {detail}")
                chunk["model"] = call.public_model
                first_by = 0.0
                yield chunk
        finally:
            # a finished stream hands its connection back to the pool (aiohttp closes it if the body
            # was not read to the end); anything else drops it, which also cancels the upstream call
            if done:
                resp.release()
            else:
                resp.close()

    # -- other than chat: embeddings, images (the JSON body and reply pass through) ----------------
    async def _relay_json(self, call: ChatCall, path: str) -> dict[str, Any]:
        resp = await self._post(call, {"model": call.model, **call.params}, url=f"{self._base}/{path}")
        try:
            data = orjson.loads(await resp.read())
        except TimeoutError as exc:
            raise UpstreamTimeout("上游响应超时", "the upstream timed out") from exc
        except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            raise UpstreamError("上游返回了无法解析的内容", "the upstream sent a broken reply") from exc
        finally:
            resp.release()
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise UpstreamError("上游返回了无法解析的内容", "the upstream sent a reply without data")
        return data

    async def embed(self, call: ChatCall) -> dict[str, Any]:
        """``POST {base}/embeddings``; ``call.params`` holds ``input`` and the rest."""
        data = await self._relay_json(call, "embeddings")
        data["model"] = call.public_model
        return data

    async def images(self, call: ChatCall) -> dict[str, Any]:
        """``POST {base}/images/generations``; ``call.params`` holds ``prompt``, ``n`` and the rest."""
        return await self._relay_json(call, "images/generations")

    async def close(self) -> None:
        """The session is owned by the app, not by one provider."""
