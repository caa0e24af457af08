"""Anthropic Messages <-> OpenAI chat completions, both directions.

Shared tables first (stop reasons, content blocks <-> content parts, tools, usage); then
the door side (``POST /v1/messages``: a Messages request -> a chat call; a
``chat.completion`` -> a Messages reply; ``chat.completion.chunk``s -> Messages stream
events); then the provider side (a chat call -> an Anthropic request; Anthropic replies
and events -> chat), which reuses the same tables.

Not translated (documented in docs/PROTOCOL.md): ``top_k`` and ``thinking`` are accepted
and ignored; images inside ``tool_result`` blocks keep only their text; documents,
citations, server tools and cache control are not supported.
"""

from __future__ import annotations

from typing import Any

import orjson

from lightrelay.errors import BadRequest

# -- shared tables ----------------------------------------------------------------------------

STOP_REASON = {  # chat finish_reason -> Anthropic stop_reason
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "refusal",
}
FINISH_REASON = {  # Anthropic stop_reason -> chat finish_reason
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
    "pause_turn": "stop", "refusal": "content_filter",
}


def usage_to_anthropic(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    return {"input_tokens": int(usage.get("prompt_tokens") or 0),
            "output_tokens": int(usage.get("completion_tokens") or 0)}


def usage_from_anthropic(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    prompt = int(usage.get("input_tokens") or 0) + int(usage.get("cache_read_input_tokens") or 0) \
        + int(usage.get("cache_creation_input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    read, created = usage.get("cache_read_input_tokens"), usage.get("cache_creation_input_tokens")
    if read or created:  # prompt caching: what was read from / written to the cache (OpenAI: cached_tokens)
        out["prompt_tokens_details"] = {"cached_tokens": int(read or 0), "cache_creation_tokens": int(created or 0)}
    return out


def block_to_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``text`` or ``image`` content block -> a chat content part."""
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise _bad(f"{where}.text", "a string is required")
        return {"type": "text", "text": text}
    if kind == "image":
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
            url = f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
        elif isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
            url = source["url"]
        else:
            raise _bad(f"{where}.source", "an image source of type base64 (with data) or url is required")
        return {"type": "image_url", "image_url": {"url": url}}
    raise _bad(f"{where}.type", f"unsupported content block type {kind!r}")


def part_to_block(part: dict[str, Any]) -> dict[str, Any] | None:
    """A chat content part -> a ``text`` or ``image`` content block (None for other parts)."""
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "image_url":
        url = (part.get("image_url") or {}).get("url") or ""
        if url.startswith("data:") and ";base64," in url:
            media, data = url[5:].split(";base64,", 1)
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


def tool_to_chat(tool: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic tool definition -> a chat ``function`` tool."""
    fn: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def tool_from_chat(tool: dict[str, Any]) -> dict[str, Any]:
    """A chat ``function`` tool -> an Anthropic tool definition."""
    fn = tool.get("function") or {}
    out: dict[str, Any] = {"name": fn.get("name"), "input_schema": fn.get("parameters") or {"type": "object"}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def tool_choice_to_chat(choice: dict[str, Any]) -> str | dict[str, Any]:
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("tool_choice", "type must be auto, any, tool (with name) or none")


def tool_choice_from_chat(choice: str | dict[str, Any]) -> dict[str, Any]:
    if choice == "required":
        return {"type": "any"}
    if choice in ("auto", "none"):
        return {"type": choice}
    return {"type": "tool", "name": ((choice or {}).get("function") or {}).get("name")}  # type: ignore[union-attr]


def tool_call_to_block(call: dict[str, Any]) -> dict[str, Any]:
    """A chat ``tool_calls`` item -> a ``tool_use`` block (arguments parsed as JSON)."""
    fn = call.get("function") or {}
    args = fn.get("arguments") or "{}"
    try:
        parsed = orjson.loads(args) if isinstance(args, str) else args
    except orjson.JSONDecodeError:
        parsed = {"_raw": args}
    return {"type": "tool_use", "id": call.get("id") or "", "name": fn.get("name") or "",
            "input": parsed if isinstance(parsed, dict) else {"value": parsed}}


def block_to_tool_call(block: dict[str, Any]) -> dict[str, Any]:
    """A ``tool_use`` block -> a chat ``tool_calls`` item (input written as JSON text)."""
    return {"id": block.get("id") or "", "type": "function",
            "function": {"name": block.get("name") or "", "arguments": orjson.dumps(block.get("input") or {}).decode()}}


def _bad(param: str, why: str) -> BadRequest:
    return BadRequest(f"参数错误 {param}: {why}", f"invalid {param}: {why}", param=param)


# -- door side: Messages request -> chat --------------------------------------------------------

IGNORED = {"top_k", "thinking", "service_tier", "anthropic_version", "container", "context_management"}
ACCEPTED = {"model", "messages", "system", "max_tokens", "stop_sequences", "stream", "temperature", "top_p",
            "tools", "tool_choice", "metadata"} | IGNORED


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        texts = []
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise _bad(f"system.{i}", "system blocks must be text blocks")
            texts.append(block["text"])
        return "\n\n".join(texts)
    raise _bad("system", "a string or a list of text blocks is required")


def _tool_result_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    raise _bad(f"{where}.content", "a string or a list of blocks is required")


def _message_to_chat(i: int, msg: Any, out: list[dict[str, Any]]) -> None:
    where = f"messages.{i}"
    if not isinstance(msg, dict):
        raise _bad(where, "an object is required")
    role = msg.get("role")
    if role not in ("user", "assistant"):
        raise _bad(f"{where}.role", "must be user or assistant")
    content = msg.get("content")
    if isinstance(content, str):
        out.append({"role": role, "content": content})
        return
    if not isinstance(content, list):
        raise _bad(f"{where}.content", "a string or a list of content blocks is required")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        if not isinstance(block, dict):
            raise _bad(at, "an object is required")
        kind = block.get("type")
        if kind == "tool_use" and role == "assistant":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(at, "tool_use needs id and name")
            calls.append(block_to_tool_call(block))
        elif kind == "tool_result" and role == "user":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"{at}.tool_use_id", "a string is required")
            text = _tool_result_text(block.get("content"), at)
            if block.get("is_error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            parts.append(block_to_part(block, at))
    if role == "assistant":
        text = "".join(p.get("text", "") for p in parts if p["type"] == "text")
        reply: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            reply["tool_calls"] = calls
        if text or calls:
            out.append(reply)
        return
    if parts:
        single = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if single else parts})


def request_to_chat(body: Any, *, max_messages: int,
                    need_max_tokens: bool = True) -> tuple[str, list[dict[str, Any]], dict[str, Any], bool]:
    """A Messages request -> (model, chat messages, chat params, stream). BadRequest naming the field.
    ``need_max_tokens=False`` for count_tokens, which takes no max_tokens."""
    if not isinstance(body, dict):
        raise _bad("body", "a JSON object is required")
    for key in body:
        if key not in ACCEPTED:
            raise _bad(key, "unsupported parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 200 or any(ord(c) < 32 or c == "\x7f" for c in model):
        raise _bad("model", "a model name is required")
    max_tokens = body.get("max_tokens")
    if (need_max_tokens or max_tokens is not None) and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise _bad("max_tokens", "max_tokens (a positive integer) is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "a non-empty list is required")
    if len(messages) > max_messages:
        raise BadRequest(f"messages 太多（最多 {max_messages} 条）", f"too many messages (at most {max_messages})",
                         param="messages")
    chat: list[dict[str, Any]] = []
    if body.get("system") is not None:
        chat.append({"role": "system", "content": _system_text(body["system"])})
    for i, msg in enumerate(messages):
        _message_to_chat(i, msg, chat)
    params: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens is not None else {}
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise _bad(name, "a number from 0 to 1 is required")
            params[name] = value
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 4:
            raise _bad("stop_sequences", "a list of at most 4 strings is required")
        if stops:
            params["stop"] = stops
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                                  for t in tools):
            raise _bad("tools", "a list of tools with a name each is required")
        if tools:
            params["tools"] = [tool_to_chat(t) for t in tools]
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict):
            raise _bad("tool_choice", "an object is required")
        if "tools" in params:  # a chat upstream refuses tool_choice without tools
            params["tool_choice"] = tool_choice_to_chat(choice)
            if choice.get("disable_parallel_tool_use") and "tools" in params:
                params["parallel_tool_calls"] = False
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        params["user"] = metadata["user_id"][:256]
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream", "a boolean is required")
    return model, chat, params, stream


# -- door side: chat reply -> Messages reply ---------------------------------------------------

def message_id(chat_id: str | None) -> str:
    tail = (chat_id or "").removeprefix("chatcmpl-") or "lightrelay"
    return f"msg_{tail}"


def stop_reason_of(finish_reason: str | None, stop_sequences: list[str] | None,
                   matched: Any = None) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for a chat finish_reason. An upstream that names the stop string
    it met (vLLM's ``stop_reason``) gives ``stop_sequence``; otherwise a stop is ``end_turn``."""
    if finish_reason == "stop" and stop_sequences and isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    return STOP_REASON.get(finish_reason or "stop", "end_turn"), None


def message_from_chat(completion: dict[str, Any], model: str,
                      stop_sequences: list[str] | None = None) -> dict[str, Any]:
    """A ``chat.completion`` (choice 0) -> an Anthropic ``message``."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    content += [tool_call_to_block(c) for c in msg.get("tool_calls") or ()]
    reason, sequence = stop_reason_of(choice.get("finish_reason"), stop_sequences, choice.get("stop_reason"))
    return {"id": message_id(completion.get("id")), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": reason, "stop_sequence": sequence,
            "usage": usage_to_anthropic(completion.get("usage"))}


# -- door side: chat chunks -> Messages stream events --------------------------------------------

def sse_event(name: bytes, data: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessageEvents:
    """Turns one stream's ``chat.completion.chunk``s (choice 0) into Messages stream events.

    ``start()`` once, ``feed(chunk)`` per chunk, then ``finish(usage)`` — or ``error(body)`` when the
    stream broke. Each returns the bytes to send (SSE, ``event:`` + ``data:``)."""

    __slots__ = ("msg_id", "model", "stop_sequences", "index", "open", "tools", "finish_reason", "matched")

    def __init__(self, msg_id: str, model: str, stop_sequences: list[str] | None = None) -> None:
        self.msg_id = msg_id
        self.model = model
        self.stop_sequences = stop_sequences
        self.index = -1  # the last content block started
        self.open: str | None = None  # "text" | "tool": the kind of the block still open
        self.tools: dict[int, int] = {}  # chat tool_call index -> content block index
        self.finish_reason: str | None = None
        self.matched: Any = None

    def start(self, input_tokens: int = 0) -> bytes:
        message = {"id": self.msg_id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": input_tokens, "output_tokens": 0}}
        return sse_event(b"message_start", {"type": "message_start", "message": message})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return sse_event(b"content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _begin(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.index += 1
        self.open = kind
        return out + sse_event(b"content_block_start",
                               {"type": "content_block_start", "index": self.index, "content_block": block})

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = b""
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self.open != "text":
                    out += self._begin("text", {"type": "text", "text": ""})
                out += sse_event(b"content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                          "delta": {"type": "text_delta", "text": text}})
            for call in delta.get("tool_calls") or ():
                n = call.get("index", 0)
                fn = call.get("function") or {}
                if n not in self.tools:
                    out += self._begin("tool", {"type": "tool_use", "id": call.get("id") or f"toolu_{n}",
                                                "name": fn.get("name") or "", "input": {}})
                    self.tools[n] = self.index
                args = fn.get("arguments")
                if args:
                    out += sse_event(b"content_block_delta", {
                        "type": "content_block_delta", "index": self.tools[n],
                        "delta": {"type": "input_json_delta", "partial_json": args}})
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                self.matched = choice.get("stop_reason")
        return out

    def finish(self, usage: dict[str, Any] | None) -> bytes:
        reason, sequence = stop_reason_of(self.finish_reason, self.stop_sequences, self.matched)
        return self._close() + sse_event(b"message_delta", {
            "type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage_to_anthropic(usage)}) + sse_event(b"message_stop", {"type": "message_stop"})

    def error(self, body: dict[str, Any]) -> bytes:
        return sse_event(b"error", body)


# -- provider side: chat -> Anthropic request ---------------------------------------------------

def _blocks(content: Any) -> list[dict[str, Any]]:
    """A chat message content as content blocks (empty text left out: Anthropic refuses it)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or ():
        block = part_to_block(part) if isinstance(part, dict) else None
        if block is not None and (block["type"] != "text" or block["text"]):
            blocks.append(block)
    return blocks


def to_anthropic_request(messages: list[dict[str, Any]], params: dict[str, Any], *, model: str,
                         default_max_tokens: int, stream: bool = False) -> dict[str, Any]:
    """A chat call -> a Messages request: system messages to ``system``; tool results to ``tool_result``
    blocks in a user turn; consecutive turns of one role merged (Anthropic wants them alternating);
    ``max_tokens`` defaulted; ``stop`` to ``stop_sequences``; temperature capped at Anthropic's 1."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            text = content if isinstance(content, str) else "".join(
                p.get("text") or "" for p in content or () if isinstance(p, dict))
            if text:
                system.append(text)
            continue
        if role == "assistant":
            blocks = _blocks(content) + [tool_call_to_block(c) for c in m.get("tool_calls") or ()]
        elif role in ("tool", "function"):
            result = _blocks(content) if isinstance(content, list) else (content or "")
            blocks = [{"type": "tool_result", "tool_use_id": m.get("tool_call_id") or m.get("name") or "",
                       "content": result}]
            role = "user"
        else:
            blocks, role = _blocks(content), "user"
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    body: dict[str, Any] = {"model": model, "messages": turns,
                            "max_tokens": params.get("max_tokens") or params.get("max_completion_tokens")
                            or default_max_tokens}
    if system:
        body["system"] = "\n\n".join(system)
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("temperature") is not None:
        body["temperature"] = min(1.0, params["temperature"])
    if params.get("top_p") is not None:
        body["top_p"] = params["top_p"]
    tools = [tool_from_chat(t) for t in params.get("tools") or () if t.get("type", "function") == "function"]
    if tools:
        body["tools"] = tools
        choice = tool_choice_from_chat(params.get("tool_choice") or "auto")
        if params.get("parallel_tool_calls") is False and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        if params.get("tool_choice") is not None or "disable_parallel_tool_use" in choice:
            body["tool_choice"] = choice
    if params.get("user"):
        body["metadata"] = {"user_id": params["user"]}
    if stream:
        body["stream"] = True
    return body


# -- provider side: Anthropic reply -> chat.completion -------------------------------------------

def finish_reason_of(stop_reason: str | None) -> str | None:
    return None if stop_reason is None else FINISH_REASON.get(stop_reason, "stop")


def completion_from_message(msg: dict[str, Any], *, model: str, created: int) -> dict[str, Any]:
    """A Messages reply -> a ``chat.completion``: text blocks joined, ``tool_use`` blocks as
    ``tool_calls``, ``thinking`` blocks as ``reasoning_content``, cache counts kept in usage."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append(block_to_tool_call(block))
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    return {"id": msg.get("id") or "chatcmpl-anthropic", "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason_of(msg.get("stop_reason")),
                         "logprobs": None}],
            "usage": usage_from_anthropic(msg.get("usage"))}


# -- provider side: Anthropic stream events -> chat.completion.chunk -----------------------------

class StreamError(Exception):
    """An ``error`` event in a Messages stream; ``kind`` is its error type (e.g. ``overloaded_error``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class ChatChunks:
    """Feed Messages stream events (each parsed ``data:`` object) one at a time; ``feed`` returns the
    ``chat.completion.chunk`` the event becomes, or None. ``message_stop`` sets ``done`` and becomes the
    usage chunk (``choices: []``); an ``error`` event raises ``StreamError``."""

    __slots__ = ("id", "model", "created", "usage", "tools", "done")

    def __init__(self, *, model: str, created: int) -> None:
        self.id = "chatcmpl-anthropic"
        self.model = model
        self.created = created
        self.usage: dict[str, Any] = {}
        self.tools: dict[int, int] = {}  # content block index -> tool_calls index
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def feed(self, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                return self._chunk({"content": delta.get("text", "")})
            if dtype == "input_json_delta":
                slot = self.tools.get(event.get("index", 0))
                if slot is None:
                    return None
                return self._chunk({"tool_calls": [{"index": slot,
                                                    "function": {"arguments": delta.get("partial_json", "")}}]})
            if dtype == "thinking_delta":
                return self._chunk({"reasoning_content": delta.get("thinking", "")})
            return None  # signature_delta, citations_delta
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            btype = block.get("type")
            if btype == "tool_use":
                slot = self.tools[event.get("index", 0)] = len(self.tools)
                return self._chunk({"tool_calls": [{"index": slot, "id": block.get("id", ""), "type": "function",
                                                    "function": {"name": block.get("name", ""), "arguments": ""}}]})
            if btype == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
            return None
        if kind == "message_start":
            msg = event.get("message") or {}
            self.id = msg.get("id") or self.id
            self.usage.update(msg.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            return self._chunk({}, finish_reason_of((event.get("delta") or {}).get("stop_reason")) or "stop")
        if kind == "message_stop":
            self.done = True
            return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "choices": [], "usage": usage_from_anthropic(self.usage)}
        if kind == "error":
            err = event.get("error") or {}
            raise StreamError(str(err.get("type") or "error"), str(err.get("message") or ""))
        return None  # ping, content_block_stop, events added later
