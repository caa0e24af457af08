"""The Responses door: ``POST /v1/responses`` (OpenAI's Responses API, stateless).

Translated to a chat call (``lightrelay.translate.responses``), so every channel and the
local model serve it; Bearer tokens, OpenAI error objects, typed SSE events for streams.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from lightrelay.errors import RelayError
from lightrelay.http.guard import guard_of
from lightrelay.http.io import LiveStream, read_json, translated, unless_gone
from lightrelay.http.light import bearer
from lightrelay.http.openai import rate_headers
from lightrelay.http.render import JSON, internal, lang_of, openai_error
from lightrelay.relay import ChatRequest, RelayStream
from lightrelay.translate.responses import ResponseEvents, request_to_chat, response_from_chat, response_id


async def create_response(request: Request) -> Response:
    state = request.app.state.lr
    lang = lang_of(request)
    request_id = state.request_ids.next()
    try:
        body = await read_json(request, state.settings.max_body_bytes)
        model, messages, params, stream = request_to_chat(body, max_messages=state.settings.max_messages)
        req = ChatRequest(door="responses", token=bearer(request), model=model, messages=messages, params=params,
                          stream=stream)
        ticket = await guard_of(request).admit(request, state.relay, req)
        headers = rate_headers(ticket, request_id, state.clock)
        if not stream:
            completion = await unless_gone(request, state.relay.complete(ticket))
            return JSON(response_from_chat(completion, model, body), headers=headers)
        relay_stream = await unless_gone(request, state.relay.open_stream(ticket))
    except RelayError as exc:
        return openai_error(exc, lang, {"x-request-id": request_id})
    except Exception as exc:
        return openai_error(internal(exc), lang, {"x-request-id": request_id})
    events = ResponseEvents(response_id(relay_stream.id), model, body, relay_stream.created)
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
    cut = RelayStream.SHUTTING_DOWN
    abort = ResponseEvents(events.response["id"], model, body).fail(cut.code or "unavailable", cut.message_for(lang))
    body = translated(relay_stream, events, lambda exc: events.fail(exc.code or exc.type, exc.message_for(lang)))
    return LiveStream(body, media_type="text/event-stream; charset=utf-8",
                      headers=headers, stream=relay_stream, abort=abort)
