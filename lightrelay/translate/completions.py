"""Legacy text completions (``POST /v1/completions``) <-> chat completions.

The prompt becomes one user message; the reply's text is choice ``i``'s message. Not
supported (400): several prompts, token-array prompts, ``echo``, ``suffix``, ``best_of`` > 1
and ``logprobs``. Unlike OpenAI's legacy endpoint, ``max_tokens`` has no default of 16: when
it is not given the model decides.
"""

from __future__ import annotations

from typing import Any

from lightrelay.errors import BadRequest

PASSED = {"max_tokens": int, "temperature": (int, float), "top_p": (int, float), "n": int, "seed": int,
          "presence_penalty": (int, float), "frequency_penalty": (int, float), "user": str, "logit_bias": dict}
SWITCHES = {"model", "prompt", "stream", "stream_options", "stop", "echo", "suffix", "best_of", "logprobs"}


def _unsupported(param: str, why: str) -> BadRequest:
    return BadRequest(f"不支持 {param}: {why}", f"{param} is not supported: {why}", param=param,
                      code="unsupported_parameter")


def _bad(param: str, why: str) -> BadRequest:
    return BadRequest(f"参数错误 {param}: {why}", f"invalid {param}: {why}", param=param)


def request_to_chat(body: Any) -> tuple[str, list[dict[str, Any]], dict[str, Any], bool, bool]:
    """A completions request -> (model, messages, chat params, stream, include_usage)."""
    if not isinstance(body, dict):
        raise _bad("body", "a JSON object is required")
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 200 or any(ord(c) < 32 or c == "\x7f" for c in model):
        raise _bad("model", "a model name is required")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _unsupported("prompt", "one prompt, as a string (several prompts or token arrays are not supported)")
    if body.get("echo"):
        raise _unsupported("echo", "the prompt is not echoed")
    if body.get("suffix") is not None:
        raise _unsupported("suffix", "no insertion mode")
    if body.get("best_of") not in (None, 1):
        raise _unsupported("best_of", "only 1")
    if body.get("logprobs") is not None:
        raise _unsupported("logprobs", "no log probabilities")
    params: dict[str, Any] = {}
    for key, value in body.items():
        if key in SWITCHES or value is None:
            continue
        kind = PASSED.get(key)
        if kind is None:
            raise _unsupported(key, "unknown parameter")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _bad(key, "wrong type")
        params[key] = value
    if params.get("n", 1) < 1 or params.get("n", 1) > 8:
        raise _bad("n", "from 1 to 8")
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
            raise _bad("stop", "a string or a list of at most 4 strings")
        params["stop"] = stop
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream", "a boolean is required")
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return model, [{"role": "user", "content": prompt}], params, stream, include_usage


def completion_id(chat_id: str | None) -> str:
    return "cmpl-" + ((chat_id or "").removeprefix("chatcmpl-") or "lightrelay")


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def completion_from_chat(completion: dict[str, Any], model: str) -> dict[str, Any]:
    return {"id": completion_id(completion.get("id")), "object": "text_completion",
            "created": completion.get("created"), "model": model,
            "choices": [{"text": _text(c.get("message") or {}), "index": c.get("index", i), "logprobs": None,
                         "finish_reason": c.get("finish_reason")}
                        for i, c in enumerate(completion.get("choices") or ())],
            "usage": completion.get("usage")}


def chunk_from_chat(chunk: dict[str, Any], cmpl_id: str, created: int, model: str) -> dict[str, Any] | None:
    """A ``chat.completion.chunk`` -> a ``text_completion`` chunk; None when it carries nothing."""
    choices = []
    for c in chunk.get("choices") or ():
        text = (c.get("delta") or {}).get("content") or ""
        if text or c.get("finish_reason"):
            choices.append({"text": text, "index": c.get("index", 0), "logprobs": None,
                            "finish_reason": c.get("finish_reason")})
    if not choices:
        return None
    return {"id": cmpl_id, "object": "text_completion", "created": created, "model": model, "choices": choices}
