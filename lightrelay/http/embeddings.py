"""The embeddings door: ``POST /v1/embeddings``, relayed as it is to the channels serving the model.

One call is charged per request (whatever the number of inputs); the usage row gets the
prompt tokens the upstream reports. Only channels whose provider relays embeddings
(OpenAI-compatible, Azure) are tried; the local model and chat-only types are skipped.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lightrelay.errors import BadRequest, RelayError
from lightrelay.http.guard import guard_of
from lightrelay.http.io import read_json, unless_gone
from lightrelay.http.light import bearer
from lightrelay.http.openai import rate_headers
from lightrelay.http.render import JSON, internal, lang_of, openai_error
from lightrelay.http.schemas import MODEL_NAME
from lightrelay.relay import ChatRequest

MAX_INPUTS = 2048
_MODEL = re.compile(MODEL_NAME)


def _bad(param: str, why: str) -> BadRequest:
    return BadRequest(f"参数错误 {param}: {why}", f"invalid {param}: {why}", param=param)


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


def embedding_params(body: Any) -> tuple[str, dict[str, Any]]:
    """(model, the params to relay); BadRequest naming the field."""
    if not isinstance(body, dict):
        raise _bad("body", "a JSON object is required")
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 200 or not _MODEL.match(model):
        raise _bad("model", "a model name is required")
    data = body.get("input")
    if isinstance(data, str) or _is_tokens(data):
        pass
    elif isinstance(data, list) and data and (all(isinstance(x, str) for x in data)
                                              or all(_is_tokens(x) for x in data)):
        if len(data) > MAX_INPUTS:
            raise _bad("input", f"at most {MAX_INPUTS} inputs")
    else:
        raise _bad("input", "a string, a list of strings, a token array or a list of token arrays is required")
    params: dict[str, Any] = {"input": data}
    for key, value in body.items():
        if key in ("model", "input") or value is None:
            continue
        if key == "encoding_format":
            if value not in ("float", "base64"):
                raise _bad(key, "float or base64")
        elif key == "dimensions":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _bad(key, "a positive integer is required")
        elif key == "user":
            if not isinstance(value, str):
                raise _bad(key, "a string is required")
        else:
            raise BadRequest(f"不支持的参数 {key}", f"unsupported parameter {key}", param=key,
                             code="unsupported_parameter")
        params[key] = value
    return model, params


async def create_embeddings(request: Request) -> Response:
    state = request.app.state.lr
    lang = lang_of(request)
    request_id = state.request_ids.next()
    try:
        model, params = embedding_params(await read_json(request, state.settings.max_body_bytes))
        req = ChatRequest(door="embeddings", token=bearer(request), model=model, messages=[], params=params,
                          op="embed")
        ticket = await guard_of(request).admit(request, state.relay, req)
        headers = rate_headers(ticket, request_id, state.clock)
        return JSON(await unless_gone(request, state.relay.complete(ticket)), headers=headers)
    except RelayError as exc:
        return openai_error(exc, lang, {"x-request-id": request_id})
    except Exception as exc:
        return openai_error(internal(exc), lang, {"x-request-id": request_id})
