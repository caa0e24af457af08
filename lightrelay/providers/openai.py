"""The ``openai`` provider: any OpenAI-compatible HTTP API, over one shared aiohttp session.

Time limits (seconds, per channel): ``connect``; ``first_byte`` until the
response headers (and, for a stream, its first event) arrive; ``idle`` between
two stream events; ``total`` for the whole call.
"""

from __future__ import annotations

import asyncio
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


def _upstream_message(body: bytes) -> str:
    try:
        err = orjson.loads(body).get("error")
        if isinstance(err, dict):
            return str(err.get("message", ""))[:300]
        return str(err)[:300]
    except Exception:
        return body[:200].decode("utf-8", "replace")


def status_error(status: int, body: bytes) -> UpstreamFailure | BadRequest:
    """Map an upstream's non-200 answer: 400/422 is the caller's fault, the rest may fail over."""
    detail = _upstream_message(body)
    if status in (400, 422):
        return BadRequest(f"上游拒绝了请求: {detail}", f"the upstream rejected the request: {detail}")
    return UpstreamError(f"上游返回 {status}: {detail}", f"upstream answered {status}: {detail}")


class OpenAIProvider:
    kind = "openai"

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, api_key: str | None,
                 timeouts: Timeouts) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.timeouts = timeouts

    def _timeout(self, call: ChatCall) -> aiohttp.ClientTimeout:
        t = self.timeouts
        return aiohttp.ClientTimeout(total=call.timeout or t.total, connect=t.connect, sock_read=t.first_byte)

    async def _post(self, call: ChatCall, body: dict[str, Any]) -> aiohttp.ClientResponse:
        try:
            resp = await self._session.post(
                self._url, data=orjson.dumps(body), headers=self._headers, timeout=self._timeout(call)
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
            raise status_error(resp.status, body_bytes)
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
        resp = await self._post(call, body)
        wait = self.timeouts.first_byte
        try:
            while True:
                try:
                    async with asyncio.timeout(wait):
                        line = await resp.content.readline()
                except TimeoutError as exc:
                    raise UpstreamTimeout("上游响应超时", "the upstream stalled") from exc
                except aiohttp.ClientError as exc:
                    raise UpstreamError("上游连接中断", "the upstream connection broke") from exc
                if not line:
                    raise UpstreamError("上游流意外结束", "the upstream stream ended before [DONE]")
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments, event: lines
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    return
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError as exc:
                    raise UpstreamError("上游返回了无法解析的内容", "the upstream sent a broken event") from exc
                if "error" in chunk and "choices" not in chunk:
                    detail = _upstream_message(payload)
                    raise UpstreamError(f"上游出错: {detail}", f"the upstream failed: {detail}")
                chunk["model"] = call.public_model
                wait = self.timeouts.idle
                yield chunk
        finally:
            resp.close()

    async def close(self) -> None:
        """The session is owned by the app, not by one provider."""
