"""The ``gemini`` provider: Google AI Studio's Gemini API (``{base}/v1beta/models/{model}:generateContent``
and ``:streamGenerateContent?alt=sse``, key in ``x-goog-api-key``), translated by ``lightrelay.translate.gemini``.

A prompt or reply that Gemini's safety filters block before any content is a 400 for the caller
(``content_filter``), never an empty reply. A bad key (Gemini answers 400 ``API_KEY_INVALID``) or an
exhausted quota retires the key (``providers/keys.py``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from lightrelay.errors import BadRequest, UpstreamError
from lightrelay.providers.base import ChatCall
from lightrelay.providers.http import HttpProvider, Timeouts, broken, event_object, upstream_message
from lightrelay.providers.keys import KeyRing
from lightrelay.translate.gemini import Blocked, GeminiChunks, completion_from_gemini, to_gemini_request


def blocked(exc: Blocked) -> BadRequest:
    return BadRequest(f"内容被 Gemini 的安全策略拦截（{exc.reason}）",
                      f"Gemini's safety filters blocked this request or its reply ({exc.reason})",
                      code="content_filter")


class GeminiProvider(HttpProvider):
    kind = "gemini"

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, keys: KeyRing, timeouts: Timeouts) -> None:
        super().__init__(session, keys=keys, timeouts=timeouts)
        base = base_url.rstrip("/")
        self._base = base if base.endswith(("/v1beta", "/v1")) else base + "/v1beta"
        self._by_key: dict[str | None, dict[str, str]] = {}
        self._urls: dict[tuple[str, bool], str] = {}

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = self._by_key.get(key)
        if headers is None:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if key:
                headers["x-goog-api-key"] = key
            self._by_key[key] = headers
        return headers

    def _url(self, model: str, stream: bool) -> str:
        url = self._urls.get((model, stream))
        if url is None:
            name = quote(model.removeprefix("models/"), safe="-._")
            url = f"{self._base}/models/{name}:" + ("streamGenerateContent?alt=sse" if stream else "generateContent")
            self._urls[(model, stream)] = url
        return url

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        body = orjson.dumps(to_gemini_request(call.messages, call.params))
        resp, _ = await self._send("POST", self._url(call.model, False), call, body)
        data = await self._json(resp)
        if not isinstance(data, dict):
            raise broken()
        try:
            return completion_from_gemini(data, model=call.public_model, created=int(time.time()))
        except Blocked as exc:
            raise blocked(exc) from None

    async def stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        body = orjson.dumps(to_gemini_request(call.messages, call.params))
        resp, secret = await self._send("POST", self._url(call.model, True), call, body)
        chunks = GeminiChunks(model=call.public_model, created=int(time.time()))
        done = False
        try:
            async for payload in self._events(resp):
                data = event_object(payload)
                if "error" in data:
                    detail = upstream_message(payload, secret)
                    raise UpstreamError(f"上游出错: {detail}", f"the upstream failed: {detail}")
                try:
                    chunk = chunks.feed(data)
                except Blocked as exc:
                    raise blocked(exc) from None
                if chunk is not None:
                    yield chunk
            if not chunks.finished:  # Gemini's stream simply ends; one without a finishReason was cut
                raise UpstreamError("上游流意外结束", "the upstream stream ended before its finishReason")
            done = True
            yield chunks.usage_chunk()
        finally:
            self._finish(resp, done)

    async def list_models(self) -> list[str]:
        """``models.list``: the models that can ``generateContent`` (paged with ``pageToken``)."""
        names: list[str] = []
        url = self._base + "/models?pageSize=1000"
        for _ in range(20):
            resp, _ = await self._send("GET", url, None)
            data = await self._json(resp) or {}
            for m in data.get("models") or ():
                if isinstance(m, dict) and "generateContent" in (m.get("supportedGenerationMethods") or ()):
                    names.append(str(m.get("name", "")).removeprefix("models/"))
            if not data.get("nextPageToken"):
                break
            url = f"{self._base}/models?pageSize=1000&pageToken={quote(data['nextPageToken'])}"
        return sorted(names)
