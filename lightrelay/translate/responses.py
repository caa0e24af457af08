"""OpenAI Responses API <-> chat completions (the door side of ``POST /v1/responses``).

Stateless: ``previous_response_id``, ``store: true`` and ``background: true`` are refused
(there is no response store). Function tools only; ``reasoning``, ``truncation``, ``include``,
``metadata`` and the like are accepted and have no effect (``metadata`` is echoed).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from lightrelay.errors import BadRequest

ACCEPTED = {"model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice",
            "parallel_tool_calls", "stream", "previous_response_id", "store", "metadata", "user", "text",
            "reasoning", "truncation", "include", "stream_options", "service_tier", "prompt_cache_key",
            "safety_identifier", "background", "max_tool_calls", "top_logprobs", "prompt"}


def _bad(param: str, why: str, code: str | None = None) -> BadRequest:
    return BadRequest(f"参数错误 {param}: {why}", f"invalid {param}: {why}", param=param, code=code)


def _unsupported(param: str, why: str) -> BadRequest:
    return BadRequest(f"不支持 {param}: {why}", f"{param} is not supported: {why}", param=param,
                      code="unsupported_parameter")


# -- request -> chat ------------------------------------------------------------------------------

def _part(part: Any, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise _bad(where, "an object is required")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise _bad(f"{where}.text", "a string is required")
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _unsupported(where, "input_image needs image_url (file_id is not supported)")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise _unsupported(f"{where}.type", f"content part type {kind!r}")


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(where, "a string or a list of content parts is required")
    parts = [_part(p, f"{where}.{i}") for i, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(p.get("text", "") for p in output if isinstance(p, dict))
    return orjson.dumps(output).decode()


def input_to_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("instructions", "a string is required")
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
        return messages
    if not isinstance(items, list) or not items:
        raise _bad("input", "a string or a non-empty list of items is required")
    for i, item in enumerate(items):
        where = f"input.{i}"
        if not isinstance(item, dict):
            raise _bad(where, "an object is required")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"{where}.role", "must be user, assistant, system or developer")
            content = _content(item.get("content"), f"{where}.content")
            if role == "assistant" and isinstance(content, list):
                content = "".join(p.get("text", "") for p in content)
            messages.append({"role": role, "content": content})
        elif kind == "function_call":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise _bad(where, "function_call needs call_id and name")
            args = item.get("arguments")
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": args if isinstance(args, str) else "{}"}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str | None):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise _bad(f"{where}.call_id", "a string is required")
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": _output_text(item.get("output"))})
        elif kind == "reasoning":
            continue
        else:
            raise _unsupported(f"{where}.type", f"input item type {kind!r}")
    return messages


def _tool(tool: Any, i: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise _unsupported(f"tools.{i}.type", "only function tools are supported")
    if not isinstance(tool.get("name"), str):
        raise _bad(f"tools.{i}.name", "a string is required")
    fn: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object"}}
    if tool.get("description"):
        fn["description"] = tool["description"]
    if tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _unsupported("tool_choice", "auto, none, required or a function")


def _text_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _unsupported("text.format.type", repr(fmt["type"]))


def request_to_chat(body: Any, *, max_messages: int) -> tuple[str, list[dict[str, Any]], dict[str, Any], bool]:
    """A Responses request -> (model, chat messages, chat params, stream). BadRequest naming the field."""
    if not isinstance(body, dict):
        raise _bad("body", "a JSON object is required")
    for key in body:
        if key not in ACCEPTED:
            raise _unsupported(key, "unknown parameter")
    if body.get("previous_response_id") is not None:
        raise _unsupported("previous_response_id", "lightrelay keeps no responses; send the whole conversation "
                           "in input")
    if body.get("store") is True:
        raise _unsupported("store", "lightrelay keeps no responses; send store: false")
    if body.get("background") is True:
        raise _unsupported("background", "responses run in the foreground only")
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 200 or any(ord(c) < 32 or c == "\x7f" for c in model):
        raise _bad("model", "a model name is required")
    messages = input_to_messages(body)
    if len(messages) > max_messages:
        raise BadRequest(f"input 太多（最多 {max_messages} 条）", f"too many input items (at most {max_messages})",
                         param="input")
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise _bad("metadata", "an object is required")  # it is echoed in the response object
    params: dict[str, Any] = {}
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _bad("max_output_tokens", "a positive integer is required")
        params["max_tokens"] = limit
    for name, top in (("temperature", 2), ("top_p", 1)):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
                raise _bad(name, f"a number from 0 to {top} is required")
            params[name] = value
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise _bad("tools", "a list is required")
        params["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
        if body.get("tool_choice") is not None:
            params["tool_choice"] = _tool_choice(body["tool_choice"])
        if isinstance(body.get("parallel_tool_calls"), bool):
            params["parallel_tool_calls"] = body["parallel_tool_calls"]
    fmt = _text_format(body.get("text"))
    if fmt is not None:
        params["response_format"] = fmt
    if isinstance(body.get("user"), str):
        params["user"] = body["user"][:256]
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream", "a boolean is required")
    return model, messages, params, stream


# -- chat -> response -----------------------------------------------------------------------------

def usage_of(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion}


def response_id(chat_id: str | None) -> str:
    return "resp_" + ((chat_id or "").removeprefix("chatcmpl-") or "lightrelay")


def skeleton(resp_id: str, model: str, body: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    """The ``response`` object before any output, echoing the request's settings."""
    return {
        "id": resp_id, "object": "response", "created_at": created or int(time.time()), "status": "in_progress",
        "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": model, "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "truncation": "disabled",
        "usage": None, "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def _finish(response: dict[str, Any], finish_reason: str | None, usage: dict[str, Any] | None) -> dict[str, Any]:
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:
        response["status"] = "completed"
    response["usage"] = usage_of(usage)
    response["output_text"] = "".join(part["text"] for item in response["output"] if item["type"] == "message"
                                      for part in item["content"])
    return response


def response_from_chat(completion: dict[str, Any], model: str, body: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` (choice 0) -> a finished ``response`` object."""
    resp_id = response_id(completion.get("id"))
    response = skeleton(resp_id, model, body, completion.get("created"))
    choice = (completion.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    tail = resp_id[5:]
    if text:
        response["output"].append(_message_item(f"msg_{tail}", text))
    for n, call in enumerate(msg.get("tool_calls") or ()):
        fn = call.get("function") or {}
        response["output"].append(_call_item(f"fc_{tail}_{n}", call.get("id") or f"call_{tail}_{n}",
                                             fn.get("name") or "", fn.get("arguments") or ""))
    return _finish(response, choice.get("finish_reason"), completion.get("usage"))


# -- chat chunks -> response stream events -----------------------------------------------------------

class ResponseEvents:
    """Turns one stream's ``chat.completion.chunk``s (choice 0) into Responses stream events.

    ``start()`` once, ``feed(chunk)`` per chunk, then ``finish(usage)`` — or ``fail(code, message)``
    when the stream broke. Each returns the bytes to send (SSE, ``event:`` + ``data:``)."""

    __slots__ = ("response", "seq", "text_item", "calls", "finish_reason", "tail")

    def __init__(self, resp_id: str, model: str, body: dict[str, Any], created: int | None = None) -> None:
        self.response = skeleton(resp_id, model, body, created)
        self.tail = resp_id[5:]
        self.seq = 0
        self.text_item: dict[str, Any] | None = None  # the open message item (its text so far in "_parts")
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool_call index -> its open function_call item
        self.finish_reason: str | None = None

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        data["type"] = kind
        data["sequence_number"] = self.seq
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def start(self) -> bytes:
        return (self._event("response.created", {"response": self.response})
                + self._event("response.in_progress", {"response": self.response}))

    def _add(self, item: dict[str, Any]) -> tuple[int, bytes]:
        index = len(self.response["output"])
        self.response["output"].append(item)
        return index, self._event("response.output_item.added", {"output_index": index, "item": dict(item)})

    def _open_text(self) -> bytes:
        item = _message_item(f"msg_{self.tail}_{len(self.response['output'])}", "", "in_progress")
        item["content"] = []
        index, out = self._add(item)
        self.text_item = {"item": item, "index": index, "parts": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        return out + self._event("response.content_part.added", {"item_id": item["id"], "output_index": index,
                                                                 "content_index": 0, "part": part})

    def _close_text(self) -> bytes:
        open_ = self.text_item
        if open_ is None:
            return b""
        self.text_item = None
        item, index = open_["item"], open_["index"]
        text = "".join(open_["parts"])
        part = {"type": "output_text", "text": text, "annotations": []}
        item["content"] = [part]
        item["status"] = "completed"
        head = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return (self._event("response.output_text.done", {**head, "text": text, "logprobs": []})
                + self._event("response.content_part.done", {**head, "part": part})
                + self._event("response.output_item.done", {"output_index": index, "item": item}))

    def _close_call(self, state: dict[str, Any]) -> bytes:
        item, index = state["item"], state["index"]
        item["arguments"] = "".join(state["parts"])
        item["status"] = "completed"
        return (self._event("response.function_call_arguments.done", {
                    "item_id": item["id"], "output_index": index, "arguments": item["arguments"]})
                + self._event("response.output_item.done", {"output_index": index, "item": item}))

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = b""
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self.text_item is None:
                    out += self._open_text()
                self.text_item["parts"].append(text)
                out += self._event("response.output_text.delta", {
                    "item_id": self.text_item["item"]["id"], "output_index": self.text_item["index"],
                    "content_index": 0, "delta": text, "logprobs": []})
            for call in delta.get("tool_calls") or ():
                n = call.get("index", 0)
                fn = call.get("function") or {}
                state = self.calls.get(n)
                if state is None:
                    out += self._close_text()
                    item = _call_item(f"fc_{self.tail}_{n}", call.get("id") or f"call_{self.tail}_{n}",
                                      fn.get("name") or "", "", "in_progress")
                    index, added = self._add(item)
                    out += added
                    state = self.calls[n] = {"item": item, "index": index, "parts": []}
                args = fn.get("arguments")
                if args:
                    state["parts"].append(args)
                    out += self._event("response.function_call_arguments.delta", {
                        "item_id": state["item"]["id"], "output_index": state["index"], "delta": args})
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self, usage: dict[str, Any] | None) -> bytes:
        out = self._close_text()
        for state in self.calls.values():
            out += self._close_call(state)
        response = _finish(self.response, self.finish_reason, usage)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": response})

    def fail(self, code: str, message: str) -> bytes:
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": message}
        return (self._event("error", {"code": code, "message": message, "param": None})
                + self._event("response.failed", {"response": self.response}))
