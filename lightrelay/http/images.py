"""The images door: ``POST /v1/images/generations``, relayed to the channels serving the model.

Images have their own daily count per account (``quota.ImageQuota``): the request's ``n``
images are reserved before the upstream is called (429 ``image_limit_reached`` past the
limit) and given back if it fails; the request is also one call of the daily count, as on
every door. Only channels whose provider makes images (OpenAI-compatible, Azure) are tried:
with none, a 404 says so — never a made-up image.
"""

from __future__ import annotations

import asyncio
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

MAX_IMAGES = 10
MAX_PROMPT = 32_000
_MODEL = re.compile(MODEL_NAME)
TEXT_PARAMS = {"size", "quality", "style", "user", "background", "output_format", "moderation"}


def _bad(param: str, why: str) -> BadRequest:
    return BadRequest(f"参数错误 {param}: {why}", f"invalid {param}: {why}", param=param)


def image_params(body: Any) -> tuple[str, dict[str, Any], int]:
    """(model, the params to relay, the number of images); BadRequest naming the field."""
    if not isinstance(body, dict):
        raise _bad("body", "a JSON object is required")
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 200 or not _MODEL.match(model):
        raise _bad("model", "a model name is required")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
        raise _bad("prompt", f"a non-empty string of at most {MAX_PROMPT} characters is required")
    params: dict[str, Any] = {"prompt": prompt}
    n = 1
    for key, value in body.items():
        if key in ("model", "prompt") or value is None:
            continue
        if key == "n":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IMAGES:
                raise _bad(key, f"a whole number from 1 to {MAX_IMAGES} is required")
            n = value
        elif key == "response_format":
            if value not in ("url", "b64_json"):
                raise _bad(key, "url or b64_json")
        elif key == "output_compression":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _bad(key, "a whole number is required")
        elif key in TEXT_PARAMS:
            if not isinstance(value, str) or len(value) > 256:
                raise _bad(key, "a string is required")
        else:
            raise BadRequest(f"不支持的参数 {key}", f"unsupported parameter {key}", param=key,
                             code="unsupported_parameter")
        params[key] = value
    return model, params, n


async def create_images(request: Request) -> Response:
    state = request.app.state.lr
    lang = lang_of(request)
    request_id = state.request_ids.next()
    try:
        model, params, n = image_params(await read_json(request, state.settings.max_body_bytes))
        token = bearer(request)
        principal = await guard_of(request).principal(request, state.relay, token)
        req = ChatRequest(door="images", token=token, model=model, messages=[], params=params, op="images")
        charge = await state.images.reserve(account_id=principal.account_id, account_limit=principal.image_limit,
                                            n=n)
        try:
            ticket = await state.relay.admit(req, principal=principal)
            headers = rate_headers(ticket, request_id, state.clock)
            reply = await unless_gone(request, state.relay.complete(ticket))
        except BaseException:  # no images made: they are given back (also when the caller left)
            await asyncio.shield(state.images.refund(charge))
            raise
        return JSON(reply, headers=headers)
    except RelayError as exc:
        return openai_error(exc, lang, {"x-request-id": request_id})
    except Exception as exc:
        return openai_error(internal(exc), lang, {"x-request-id": request_id})
