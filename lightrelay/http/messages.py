"""The Anthropic Messages door: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

The lightrelay token comes as ``x-api-key`` (what the ``anthropic`` SDK sends) or
``Authorization: Bearer``; ``anthropic-version`` is accepted and not needed. The request is
translated to a chat call (``lightrelay.translate.anthropic``) and goes through the same
pipeline as every chat call; replies, stream events and errors are written in Anthropic's shapes.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lightrelay import tokens
from lightrelay.errors import BadRequest, RelayError
from lightrelay.http.guard import guard_of
from lightrelay.http.io import LiveStream, read_json, translated, unless_gone
from lightrelay.http.light import bearer
from lightrelay.http.render import CORS, JSON, anthropic_error, anthropic_error_body, internal, lang_of
from lightrelay.relay import ChatRequest, RelayStream
from lightrelay.translate.anthropic import MessageEvents, message_from_chat, message_id, request_to_chat


def api_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    return key.strip() if key else bearer(request)


async def create_message(request: Request) -> Response:
    state = request.app.state.lr
    lang = lang_of(request)
    request_id = state.request_ids.next()
    headers = {**CORS, "request-id": request_id, "x-request-id": request_id}
    try:
        data = await read_json(request, state.settings.max_body_bytes)
        model, messages, params, stream = request_to_chat(data, max_messages=state.settings.max_messages)
        if not messages:
            raise BadRequest("messages 没有可用的内容", "messages have no content", param="messages")
        req = ChatRequest(door="messages", token=api_key(request), model=model, messages=messages, params=params,
                          stream=stream)
        ticket = await guard_of(request).admit(request, state.relay, req)
        if not stream:
            completion = await unless_gone(request, state.relay.complete(ticket))
            return JSON(message_from_chat(completion, model, params.get("stop")), headers=headers)
        relay_stream = await unless_gone(request, state.relay.open_stream(ticket))
    except RelayError as exc:
        return anthropic_error(exc, lang, headers)
    except Exception as exc:
        return anthropic_error(internal(exc), lang, headers)
    events = MessageEvents(message_id(relay_stream.id), model, params.get("stop"))
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
    abort = events.error(anthropic_error_body(RelayStream.SHUTTING_DOWN, lang))
    body = translated(relay_stream, events, lambda exc: events.error(anthropic_error_body(exc, lang)))
    return LiveStream(body, media_type="text/event-stream; charset=utf-8",
                      headers=headers, stream=relay_stream, abort=abort)


async def count_tokens(request: Request) -> Response:
    """The prompt's tokens, counted offline (OpenAI's encodings: an estimate for other models); no charge."""
    state = request.app.state.lr
    lang = lang_of(request)
    try:
        await guard_of(request).principal(request, state.relay, api_key(request))
        data = await read_json(request, state.settings.max_body_bytes)
        model, messages, params, _ = request_to_chat(data, max_messages=state.settings.max_messages,
                                                     need_max_tokens=False)
        count = tokens.count_messages(messages, model)
        if params.get("tools"):
            count += tokens.count_text(orjson.dumps(params["tools"]).decode(), model)
    except RelayError as exc:
        return anthropic_error(exc, lang)
    except Exception as exc:
        return anthropic_error(internal(exc), lang)
    return JSON({"input_tokens": count}, headers=CORS)
