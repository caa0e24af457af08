"""The ``openai`` provider: any OpenAI-compatible HTTP API, over one shared aiohttp session;
and ``azure``: Azure OpenAI, the same wire format at other URLs with an ``api-key`` header.

Time limits, keys and error mapping: ``providers/http.py``. Chunks pass through as the upstream
sent them (so ``reasoning_content`` deltas and ``completion_tokens_details`` reach the caller).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from lightrelay.errors import UpstreamError
from lightrelay.providers.base import ChatCall
from lightrelay.providers.http import (
    HttpProvider,
    Timeouts,
    event_object,
    scrub,
    status_error,
    upstream_message,
)
from lightrelay.providers.keys import KeyRing

__all__ = ["AzureProvider", "OpenAIProvider", "Timeouts", "scrub", "status_error"]


class OpenAIProvider(HttpProvider):
    kind = "openai"

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, keys: KeyRing, timeouts: Timeouts) -> None:
        super().__init__(session, keys=keys, timeouts=timeouts)
        self._base = base_url.rstrip("/")
        self._url = self._base + "/chat/completions"
        self._plain = {"Content-Type": "application/json", "Accept": "application/json"}
        self._by_key: dict[str | None, dict[str, str]] = {}

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = self._by_key.get(key)
        if headers is None:
            headers = self._by_key[key] = {**self._plain, **({"Authorization": f"Bearer {key}"} if key else {})}
        return headers

    def _chat_url(self, call: ChatCall) -> str:
        return self._url

    def _body(self, call: ChatCall, stream: bool) -> dict[str, Any]:
        if stream:
            return {"model": call.model, "messages": call.messages, **call.params,
                    "stream": True, "stream_options": {"include_usage": True}}
        return {"model": call.model, "messages": call.messages, **call.params}

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        resp, _ = await self._send("POST", self._chat_url(call), call, orjson.dumps(self._body(call, False)))
        data = await self._json(resp)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamError("上游返回了无法解析的内容", "the upstream sent a reply without choices")
        data["model"] = call.public_model
        return data

    async def stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        resp, secret = await self._send("POST", self._chat_url(call), call, orjson.dumps(self._body(call, True)))
        done = False
        try:
            async for payload in self._events(resp):
                if payload == b"[DONE]":
                    done = True
                    return
                chunk = event_object(payload)
                if "error" in chunk and "choices" not in chunk:
                    detail = upstream_message(payload, secret)
                    raise UpstreamError(f"上游出错: {detail}", f"the upstream failed: {detail}")
                if not chunk.get("choices") and not chunk.get("usage"):
                    continue  # Azure's prompt_filter_results and other bookkeeping events
                chunk["model"] = call.public_model
                yield chunk
            raise UpstreamError("上游流意外结束", "the upstream stream ended before [DONE]")
        finally:
            self._finish(resp, done)

    # -- other than chat: embeddings, images (the JSON body and reply pass through) ----------------
    def _op_url(self, call: ChatCall, path: str) -> str:
        return f"{self._base}/{path}"

    async def _relay_json(self, call: ChatCall, path: str) -> dict[str, Any]:
        resp, _ = await self._send("POST", self._op_url(call, path), call,
                                   orjson.dumps({"model": call.model, **call.params}))
        data = await self._json(resp)
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

    async def list_models(self) -> list[str]:
        """The model ids the upstream serves (``GET {base}/models``)."""
        resp, _ = await self._send("GET", self._base + "/models", None)
        data = await self._json(resp)
        return sorted(str(m.get("id")) for m in (data or {}).get("data") or () if isinstance(m, dict) and m.get("id"))


class AzureProvider(OpenAIProvider):
    """Azure OpenAI: ``{base}/openai/deployments/{deployment}/chat/completions?api-version=…`` with an
    ``api-key`` header; the channel's model mapping names the deployment (``call.model``)."""

    kind = "azure"

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, keys: KeyRing, timeouts: Timeouts,
                 api_version: str) -> None:
        super().__init__(session, base_url=base_url, keys=keys, timeouts=timeouts)
        self.api_version = api_version
        self._urls: dict[str, str] = {}

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = self._by_key.get(key)
        if headers is None:
            headers = self._by_key[key] = {**self._plain, **({"api-key": key} if key else {})}
        return headers

    def _chat_url(self, call: ChatCall) -> str:
        url = self._urls.get(call.model)
        if url is None:
            url = self._urls[call.model] = (f"{self._base}/openai/deployments/{quote(call.model, safe='')}"
                                            f"/chat/completions?api-version={quote(self.api_version)}")
        return url

    def _op_url(self, call: ChatCall, path: str) -> str:
        return (f"{self._base}/openai/deployments/{quote(call.model, safe='')}/{path}"
                f"?api-version={quote(self.api_version)}")

    async def list_models(self) -> list[str]:
        """The deployments' models (``GET {base}/openai/models``; Azure lists the models it can deploy)."""
        resp, _ = await self._send("GET", f"{self._base}/openai/models?api-version={quote(self.api_version)}", None)
        data = await self._json(resp)
        return sorted(str(m.get("id")) for m in (data or {}).get("data") or () if isinstance(m, dict) and m.get("id"))
