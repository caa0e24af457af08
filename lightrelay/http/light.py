"""The light door: ``POST /api/light/chat/createChatCompletion``.

Token in the body (or ``Authorization: Bearer``), ``{code, data, message}``
envelope; streams are raw text after a ``start852{…}end852`` header frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lightrelay.errors import BadRequest, Forbidden, RelayError, TooManyRequests, Unauthorized
from lightrelay.http.guard import guard_of
from lightrelay.http.io import LiveStream, dumps, read_json, unless_gone
from lightrelay.http.render import CORS, JSON, internal, lang_of, light_error
from lightrelay.http.schemas import LightBody, check_count, check_messages, validate
from lightrelay.relay import ChatRequest, RelayStream, Ticket
from lightrelay.services.accounts import get_account_by_id
from lightrelay.services.redeem import redeem

FRAME_START, FRAME_END = b"start852", b"end852"
OK = "成功"


def frame(obj: dict[str, Any]) -> bytes:
    return FRAME_START + dumps(obj) + FRAME_END


def error_object(exc: RelayError, lang: str) -> dict[str, Any]:
    return {"message": exc.message_for(lang), "type": exc.type, "code": exc.code}


def info(ticket: Ticket) -> dict[str, Any]:
    """The quota ``info`` object; ``token`` only when the caller sent one (not for console sessions).
    Counts are in units (a model of weight 5 counts 5 a call); ``numOfExtraCallApi`` is the extra balance."""
    p, c = ticket.principal, ticket.charge
    out = {"token": ticket.request.token} if ticket.request.token is not None else {}
    out.update(numOfOneDayCanCallApi=p.daily_limit, numOfOneDayAlreadyCallApi=c.count, apiDate=c.day,
               isHasGPT4Auth=p.gpt4, numOfExtraCallApi=c.extra_left if c.source == "extra" else p.extra_calls)
    return out


async def account_info(state: Any, account_id: int, token: str | None) -> dict[str, Any]:
    """The same ``info`` object outside a call (after a redemption), read fresh."""
    account = await get_account_by_id(state.engine, account_id=account_id) or {}
    out = {"token": token} if token is not None else {}
    out.update(numOfOneDayCanCallApi=account.get("daily_limit"),
               numOfOneDayAlreadyCallApi=await state.relay.quota.used_today(account_id),
               apiDate=state.clock.today(), isHasGPT4Auth=bool(account.get("gpt4")),
               numOfExtraCallApi=account.get("extra_calls") or 0)
    return out


async def exchange_code(request: Request) -> Response:
    """``POST /api/light/exchangeCode/appUse`` ``{"token", "code"}``: redeem a code; the answer is the
    envelope with the updated ``info``. Without a token, a console session (with its X-CSRF-Token) will do.
    Attempts are rate-limited per account and per address (LIGHTRELAY_RATE_REDEEM)."""
    state = request.app.state.lr
    lang = lang_of(request)
    try:
        data = await read_json(request, 64 * 1024)
        if not isinstance(data, dict):
            raise BadRequest("请求体应为 JSON 对象", "the body must be a JSON object")
        token, code = data.get("token") or bearer(request), data.get("code")
        if token is not None and not isinstance(token, str) or not isinstance(code, str):
            raise BadRequest("code 应为字符串", "code must be a string", param="code", code="code_required")
        guard = guard_of(request)
        address = guard.address(request)
        if token:
            account_id = (await guard.principal(request, state.relay, token)).account_id
        else:
            account_id = await _session_account(request, state)
        limits = request.app.state.redeem_limits
        for window, key in ((limits[0], f"a{account_id}"), (limits[1], address)):
            wait = await window.hit(key)
            if wait is not None:
                raise TooManyRequests(f"兑换尝试过多，请 {wait} 秒后再试",
                                      f"too many redemption attempts; try again in {wait} s",
                                      code="too_many_redeem_attempts", retry_after=wait)
        await redeem(state.engine, account_id=account_id, code=code)
        state.relay.auth.invalidate()  # the cached principals carry the balance and GPT-4 access
        body = {"code": 200, "data": {"info": await account_info(state, account_id, token or None)}, "message": OK}
        return JSON(body, headers=CORS)
    except RelayError as exc:
        return light_error(exc, lang)
    except Exception as exc:
        return light_error(internal(exc), lang)


async def _session_account(request: Request, state: Any) -> int:
    """The console session's account, for a request from the console's own pages (X-CSRF-Token)."""
    # imported here: the console (lightrelay.web) imports this module
    from lightrelay.web.sessions import SESSION_COOKIE, Signer, session_account

    signer = Signer(state.settings.secret())
    session_id = signer.unsign(request.cookies.get(SESSION_COOKIE))
    account_id = await session_account(state.engine, session_id=session_id) if session_id else None
    if account_id is None:
        raise Unauthorized("缺少令牌 token", "missing API token", code="missing_api_key")
    if not signer.csrf_ok(session_id, request.headers.get("x-csrf-token")):
        raise Forbidden("缺少或错误的 X-CSRF-Token", "a console session needs its X-CSRF-Token header",
                        code="csrf_failed")
    account = await get_account_by_id(state.engine, account_id=account_id)
    if account is None or account["disabled"] or not account["active"]:
        raise Forbidden("账号已被禁用", "this account is disabled", code="account_disabled")
    return account_id


async def full_info(ticket: Ticket, images: Any) -> dict[str, Any]:
    """``info`` with the image fields (``sdLimitCount``, ``sdTextToImg``, ``isSdHide``)."""
    out = info(ticket)
    if images is not None:
        p, day = ticket.principal, ticket.charge.day
        fields = images.info_now(p.account_id, p.image_limit, day)  # the usual case: no await, no read
        out.update(fields if fields is not None else await images.info(p.account_id, p.image_limit, day))
    return out


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


async def create_chat_completion(request: Request) -> Response:
    state = request.app.state.lr
    lang = lang_of(request)
    try:
        data = check_count(await read_json(request, state.settings.max_body_bytes), state.settings.max_messages)
        body = validate(LightBody, data)
        messages = body.messages
        if messages is None and body.prompt is not None:
            messages = [{"role": "user", "content": body.prompt}]
            messages = validate(LightBody, {"messages": messages}).messages
        req = ChatRequest(
            door="light", token=body.token or bearer(request), model=body.model or state.settings.default_model,
            messages=check_messages(messages, state.settings.max_messages), params=body.params.upstream(),
            stream=body.params.stream, include_usage=body.params.wants_usage,
        )
        ticket = await guard_of(request).admit(request, state.relay, req)
        if not req.stream:
            completion = await unless_gone(request, state.relay.complete(ticket))
            details = await full_info(ticket, state.images)
            envelope = {"code": 200, "data": {"completion": completion, "info": details}, "message": OK}
            return JSON(envelope, headers=CORS)
        stream = await unless_gone(request, state.relay.open_stream(ticket))
    except RelayError as exc:
        return light_error(exc, lang)
    except Exception as exc:
        return light_error(internal(exc), lang)
    headers = {**CORS, "cache-control": "no-cache", "x-accel-buffering": "no"}
    abort = frame({"error": error_object(RelayStream.SHUTTING_DOWN, lang)})
    return LiveStream(light_stream_body(stream, lang), media_type="text/event-stream; charset=utf-8", headers=headers,
                      stream=stream, abort=abort)


async def light_stream_body(stream: RelayStream, lang: str) -> AsyncIterator[bytes]:
    ticket = stream.ticket
    yield frame({"id": stream.id, "object": "chat.completion.chunk", "model": ticket.request.model,
                 "created": stream.created, "info": await full_info(ticket, stream.relay.images)})
    try:
        async with contextlib.aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                for choice in chunk.get("choices") or ():
                    if choice.get("index", 0) == 0:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text.encode()
    except RelayError as exc:
        yield frame({"error": error_object(exc, lang)})
        return
    if ticket.request.include_usage:
        yield frame({"usage": stream.totals(), "finish_reason": stream.finish_reason or "stop"})
