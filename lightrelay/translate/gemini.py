"""OpenAI chat <-> Gemini ``generateContent`` (Google AI Studio), the provider side.

``to_gemini_request`` (chat call -> request), ``completion_from_gemini`` (reply -> ``chat.completion``),
``GeminiChunks`` (each ``streamGenerateContent?alt=sse`` event -> a ``chat.completion.chunk``).
Roles: ``assistant`` -> ``model``, system -> ``systemInstruction``, tool results ->
``functionResponse`` parts. A prompt or reply blocked by Gemini's safety filters before any
content raises ``Blocked`` (an error for the caller, never an empty reply).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

FINISH_REASON = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
                 "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
                 "IMAGE_SAFETY": "content_filter", "LANGUAGE": "stop", "OTHER": "stop",
                 "MALFORMED_FUNCTION_CALL": "stop", "FINISH_REASON_UNSPECIFIED": "stop"}
BLOCKED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
_SCHEMA_DROP = {"$schema", "additionalProperties", "strict", "$id", "$ref", "$defs", "definitions"}


class Blocked(Exception):
    """Gemini's safety filters refused the prompt or the reply; ``reason`` is Gemini's word for why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- chat -> Gemini request ------------------------------------------------------------------------

def _schema(schema: Any) -> Any:
    """A JSON schema with the keywords Gemini's OpenAPI subset refuses left out."""
    if isinstance(schema, dict):
        return {k: _schema(v) for k, v in schema.items() if k not in _SCHEMA_DROP}
    if isinstance(schema, list):
        return [_schema(v) for v in schema]
    return schema


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        return {"inlineData": {"mimeType": head[5:].split(";", 1)[0] or "image/png", "data": data}}
    ext = url.rsplit(".", 1)[-1].lower().split("?", 1)[0]
    mime = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}.get(ext, "image/png")
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content or ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and part.get("text"):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if url:
                parts.append(_image(url))
    return parts


def _response(content: Any) -> dict[str, Any]:
    text = content if isinstance(content, str) else "".join(
        p.get("text") or "" for p in content or () if isinstance(p, dict))
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": value}


def to_gemini_request(messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name (a functionResponse is matched by name)
    for m in messages:
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            system += _parts(content)
            continue
        if role == "assistant":
            parts = _parts(content)
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                names[call.get("id") or ""] = fn.get("name") or ""
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    args = {}
                parts.append({"functionCall": {"name": fn.get("name") or "", "args": args if isinstance(args, dict)
                                               else {"value": args}}})
            role = "model"
        elif role in ("tool", "function"):
            name = names.get(m.get("tool_call_id") or "") or m.get("name") or ""
            parts, role = [{"functionResponse": {"name": name, "response": _response(content)}}], "user"
        else:
            parts, role = _parts(content), "user"
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config: dict[str, Any] = {}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                         ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if params.get(ours) is not None:
            config[theirs] = params[ours]
    limit = params.get("max_tokens") or params.get("max_completion_tokens")
    if limit:
        config["maxOutputTokens"] = limit
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("n", 1) != 1:
        config["candidateCount"] = params["n"]
    fmt = params.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseSchema"] = _schema(schema)
    if config:
        body["generationConfig"] = config
    decls = []
    for tool in params.get("tools") or ():
        fn = tool.get("function") or {}
        decl: dict[str, Any] = {"name": fn.get("name") or ""}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if fn.get("parameters") and (fn["parameters"].get("properties") or fn["parameters"].get("type") != "object"):
            decl["parameters"] = _schema(fn["parameters"])
        decls.append(decl)
    if decls:
        body["tools"] = [{"functionDeclarations": decls}]
        choice = params.get("tool_choice")
        if choice is not None:
            if isinstance(choice, dict):
                cfg = {"mode": "ANY", "allowedFunctionNames": [(choice.get("function") or {}).get("name", "")]}
            else:
                cfg = {"mode": {"required": "ANY", "none": "NONE"}.get(choice, "AUTO")}
            body["toolConfig"] = {"functionCallingConfig": cfg}
    return body


# -- Gemini -> chat ----------------------------------------------------------------------------------

def usage_from_gemini(meta: dict[str, Any] | None) -> dict[str, Any]:
    meta = meta or {}
    prompt = int(meta.get("promptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": int(meta.get("totalTokenCount") or prompt + completion)}
    if thoughts:
        out["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    if meta.get("cachedContentTokenCount"):
        out["prompt_tokens_details"] = {"cached_tokens": int(meta["cachedContentTokenCount"])}
    return out


def _call(part: dict[str, Any], index: int) -> dict[str, Any]:
    fc = part["functionCall"]
    return {"index": index, "id": fc.get("id") or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": fc.get("name") or "", "arguments": orjson.dumps(fc.get("args") or {}).decode()}}


def _check_prompt(data: dict[str, Any]) -> None:
    reason = (data.get("promptFeedback") or {}).get("blockReason")
    if reason and not data.get("candidates"):
        raise Blocked(str(reason))


def completion_from_gemini(data: dict[str, Any], *, model: str, created: int) -> dict[str, Any]:
    _check_prompt(data)
    choices = []
    for i, cand in enumerate(data.get("candidates") or ()):
        texts, thoughts, calls = [], [], []
        for part in (cand.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                calls.append(_call(part, len(calls)))
            elif "text" in part:
                (thoughts if part.get("thought") else texts).append(part["text"])
        reason = cand.get("finishReason")
        if reason in BLOCKED and not texts and not calls:
            raise Blocked(str(reason))
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
        if calls:
            for c in calls:
                del c["index"]
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        finish = "tool_calls" if calls else FINISH_REASON.get(reason or "STOP", "stop")
        choices.append({"index": cand.get("index", i), "message": message, "finish_reason": finish, "logprobs": None})
    if not choices:
        raise Blocked("no candidates")
    return {"id": "chatcmpl-" + (data.get("responseId") or uuid.uuid4().hex), "object": "chat.completion",
            "created": created, "model": model, "choices": choices, "usage": usage_from_gemini(data.get("usageMetadata"))}


class GeminiChunks:
    """Feed each streamed ``GenerateContentResponse`` (one SSE event); ``feed`` returns the
    ``chat.completion.chunk`` it becomes, or None. ``finished`` once every candidate that spoke gave a
    finishReason; ``usage_chunk()`` is the last chunk (``choices: []``)."""

    __slots__ = ("id", "model", "created", "usage", "started", "tools", "said", "finished")

    def __init__(self, *, model: str, created: int) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.model = model
        self.created = created
        self.usage: dict[str, Any] | None = None
        self.started: set[int] = set()  # candidates whose role was sent
        self.tools: dict[int, int] = {}  # candidate -> tool calls so far
        self.said: set[int] = set()  # candidates that produced content
        self.finished = False

    def feed(self, data: dict[str, Any]) -> dict[str, Any] | None:
        _check_prompt(data)
        if data.get("usageMetadata"):
            self.usage = data["usageMetadata"]
        choices = []
        for i, cand in enumerate(data.get("candidates") or ()):
            index = cand.get("index", i)
            delta: dict[str, Any] = {}
            if index not in self.started:
                self.started.add(index)
                delta["role"] = "assistant"
            for part in (cand.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    n = self.tools.get(index, 0)
                    self.tools[index] = n + 1
                    delta.setdefault("tool_calls", []).append(_call(part, n))
                elif "text" in part:
                    key = "reasoning_content" if part.get("thought") else "content"
                    delta[key] = delta.get(key, "") + part["text"]
            if "content" in delta or "tool_calls" in delta:
                self.said.add(index)
            reason = cand.get("finishReason")
            finish = None
            if reason:
                if reason in BLOCKED and index not in self.said:
                    raise Blocked(str(reason))
                finish = "tool_calls" if self.tools.get(index) else FINISH_REASON.get(reason, "stop")
                self.finished = True
            if delta or finish:
                choices.append({"index": index, "delta": delta, "finish_reason": finish})
        if not choices:
            return None
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": choices}

    def usage_chunk(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage_from_gemini(self.usage)}
