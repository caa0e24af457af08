"""The playground page, and the console-only chat endpoint it calls.

The browser never holds an API token for the playground: ``POST /console/api/chat``
is authenticated by the session cookie plus the CSRF header, and goes through the
same ``Relay`` pipeline as the API doors (same daily count, routing, usage
records; the door is recorded as ``console``). It answers in the light stream
format: a ``start852{…}end852`` header frame, the reply text, then an optional
usage or error frame.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from lightrelay.errors import Forbidden, RelayError
from lightrelay.http.io import LiveStream, read_json, unless_gone
from lightrelay.http.light import light_stream_body
from lightrelay.http.render import light_error
from lightrelay.http.schemas import LightBody, check_messages, validate
from lightrelay.relay import ChatRequest
from lightrelay.services.accounts import Principal
from lightrelay.web.console import Console, Ctx
from lightrelay.web.me import today

DOOR = "console"


def principal_of(account: dict[str, Any]) -> Principal:
    if account["disabled"] or not account["active"]:
        raise Forbidden("账号已被禁用", "this account is disabled", code="account_disabled")
    return Principal(account_id=account["id"], email=account["email"], token_id=None,  # type: ignore[arg-type]
                     daily_limit=account["daily_limit"], gpt4=bool(account["gpt4"]),
                     is_admin=bool(account["is_admin"]), disabled=False,
                     extra_calls=account.get("extra_calls") or 0)


def routes(console: Console) -> list[BaseRoute]:
    page = console.page

    @page(login=True)
    async def playground(ctx: Ctx) -> Response:
        models = ctx.state.router.models()
        default = ctx.state.settings.default_model
        return console.render(ctx, "playground.html", models=models,
                              default_model=default if default in models else (models[0] if models else ""),
                              today=await today(ctx))

    @page(login=True, as_json=True)
    async def chat(ctx: Ctx) -> Response:
        state, lang = ctx.state, ctx.lang
        try:
            body = validate(LightBody, await read_json(ctx.request, state.settings.max_body_bytes))
            req = ChatRequest(door=DOOR, token=None, model=body.model or state.settings.default_model,
                              messages=check_messages(body.messages, state.settings.max_messages),
                              params=body.params.upstream(), stream=True, include_usage=True)
            ticket = await state.relay.admit(req, principal=principal_of(ctx.account or {}))
            # the browser leaving stops the upstream call at once, as on the API doors
            stream = await unless_gone(ctx.request, state.relay.open_stream(ticket))
        except RelayError as exc:
            return console.finish(ctx, light_error(exc, lang))
        headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
        return console.finish(ctx, LiveStream(light_stream_body(stream, lang), media_type="text/event-stream; charset=utf-8",
                                              headers=headers, stream=stream))

    return [
        Route("/playground", playground, methods=["GET"]),
        Route("/console/api/chat", chat, methods=["POST"]),
    ]

