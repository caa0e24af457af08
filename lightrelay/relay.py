"""The request pipeline, door-independent, read top to bottom:

    admit:   auth → model allowed? → pick channels → reserve today's call
    call:    try channels in order until one answers (failover only before any reply byte)
    finish:  settle (keep the charge) or refund → record usage

The doors (``lightrelay.http.light`` / ``lightrelay.http.openai``) turn HTTP into a
``ChatRequest`` and the results back into their wire shapes; they never decide
about quota, channels or usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from lightrelay import tokens
from lightrelay.clock import utcnow
from lightrelay.errors import (
    Forbidden,
    NotFound,
    RelayError,
    TooManyGuesses,
    TooManyRequests,
    Unavailable,
    UpstreamError,
    UpstreamFailure,
)
from lightrelay.providers.base import ChatCall
from lightrelay.routing import Route, Router, no_channel
from lightrelay.services.accounts import Principal
from lightrelay.services.auth import Authenticator
from lightrelay.services.quota import Charge, Quota
from lightrelay.services.ratelimit import PerMinute
from lightrelay.services.usage import UsageRecorder

log = logging.getLogger("lightrelay.relay")
CLIENT_GONE = 499  # status recorded for a stream whose caller went away


@dataclass(slots=True)
class ChatRequest:
    """One validated chat call, whichever door it came through."""

    door: str  # "light" | "openai"
    token: str | None
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]  # OpenAI params to pass on (no model/messages/stream/stream_options)
    stream: bool = False
    include_usage: bool = False
    client_ip: str | None = None  # the caller's address as the relay sees it (a token's --ips)
    op: str = "complete"  # the provider method a whole reply comes from: complete | embed | images
    gate: tuple[str, int] | None = None  # (Redis key, limit): refuse while the caller's address is blocked


@dataclass(slots=True)
class Ticket:
    """An admitted call: who, where it may go, and the reserved charge."""

    request: ChatRequest
    principal: Principal
    routes: list[Route]
    charge: Charge
    started: float = field(default_factory=time.perf_counter)
    finished: bool = False

    def call_for(self, route: Route) -> ChatCall:
        req = self.request
        return ChatCall(messages=req.messages, model=route.upstream_model, public_model=req.model,
                        params=req.params, timeout=route.timeout)


class Relay:
    def __init__(self, *, auth: Authenticator, router: Router, quota: Quota, recorder: UsageRecorder,
                 gpt4_prefix: str) -> None:
        self.auth = auth
        self.router = router
        self.quota = quota
        self.recorder = recorder
        self._gpt4_prefix = gpt4_prefix
        self.weights: dict[str, int] = {}  # model → units one call costs (model set M --weight N); default 1
        self.rpm = PerMinute("token_rpm")  # tokens' own requests per minute (bound to Redis by the app)
        self.images: Any = None  # quota.ImageQuota (the images door, the light info block); set by the app
        self.inflight = 0  # admitted calls not yet settled or refunded
        self._idle = asyncio.Event()
        self._idle.set()

    # -- admit ---------------------------------------------------------------
    async def admit(self, req: ChatRequest, *, principal: Principal | None = None) -> Ticket:
        """Admit a call; ``principal`` is given when the caller is already known (a console session)."""
        if principal is None:
            principal = await self.auth.principal(req.token)
        if req.model.startswith(self._gpt4_prefix) and not principal.gpt4:
            raise Forbidden(f"此账号没有 {req.model} 的使用权限（需要 GPT-4 权限）",
                            f"this account may not use {req.model} (GPT-4 access needed)",
                            param="model", code="model_not_allowed")
        if principal.models is not None or principal.ips is not None or principal.rpm is not None:
            await self._token_limits(req, principal)
        routes = self.router.routes(req.model)
        if req.op != "complete":
            routes = self._routes_for(req, routes)
        try:
            charge = await self.quota.reserve(account_id=principal.account_id, limit=principal.daily_limit,
                                              weight=self.weights.get(req.model, 1) if self.weights else 1,
                                              token_id=principal.token_id, token_limit=principal.token_limit,
                                              extra=principal.extra_calls > 0, gate=req.gate)
        except TooManyGuesses:
            raise  # the address is blocked: refused before anything, as the guard would have
        except RelayError as exc:
            self._record(req, principal, None, day=self.quota.clock.today(), status=exc.status,
                         started=time.perf_counter(), charged=False, error=exc.en)
            raise
        self.inflight += 1
        self._idle.clear()
        return Ticket(req, principal, routes, charge)

    @staticmethod
    def _routes_for(req: ChatRequest, routes: list[Route]) -> list[Route]:
        """Only channels whose provider has the call's method (e.g. ``embed``: not the local model)."""
        able = [r for r in routes if hasattr(r.provider, req.op)]
        if not able:
            what = {"embed": "embeddings", "images": "image generation"}.get(req.op, req.op)
            raise NotFound(f"模型 {req.model} 没有支持{what}的渠道", f"no channel serving {req.model} supports {what}",
                           param="model", code="model_not_found")
        return able

    async def _token_limits(self, req: ChatRequest, principal: Principal) -> None:
        """The token's own model list, addresses and requests per minute (from the cached principal)."""
        if principal.models is not None and req.model not in principal.models:
            raise Forbidden(f"此令牌不能使用模型 {req.model}", f"this token may not use the model {req.model}",
                            param="model", code="model_not_allowed")
        if principal.ips is not None and not _address_in(req.client_ip, principal.ips):
            raise Forbidden(f"此令牌不允许从地址 {req.client_ip} 调用", f"this token may not be used from "
                            f"{req.client_ip}", code="ip_not_allowed")
        if principal.rpm is not None:
            wait = await self.rpm.hit(str(principal.token_id), principal.rpm)
            if wait is not None:
                exc = TooManyRequests(f"此令牌每分钟最多调用 {principal.rpm} 次，请 {wait} 秒后再试",
                                      f"this token allows {principal.rpm} requests per minute; retry in {wait} s",
                                      code="rpm_limit_reached", retry_after=wait)
                exc.headers = {"x-ratelimit-limit-requests": str(principal.rpm),
                               "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": f"{wait}s"}
                raise exc

    async def drain(self, timeout: float) -> int:
        """Wait (up to ``timeout`` s) for admitted calls to settle, so their usage rows are recorded;
        returns how many are still running."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return self.inflight

    # -- call: whole reply ---------------------------------------------------
    async def complete(self, ticket: Ticket) -> dict[str, Any]:
        last: RelayError | None = None
        for route in ticket.routes:
            if not self.router.claim(route.channel):
                continue
            try:
                call = ticket.call_for(route)
                op = ticket.request.op
                completion = await (route.provider.complete(call) if op == "complete"
                                    else getattr(route.provider, op)(call))
            except UpstreamFailure as exc:
                self.router.failed(route.channel, exc.en)
                last = exc
                log.warning("channel %s failed: %s", route.channel, exc.en)
                continue
            except BaseException as exc:
                self.router.released(route.channel)
                await self._refund(ticket, route, exc)
                raise
            self.router.succeeded(route.channel)
            usage = completion.get("usage") or {}
            if op == "complete" and not usage.get("prompt_tokens") and not usage.get("completion_tokens"):
                usage = self._count(ticket, [c.get("message", {}).get("content") or ""
                                             for c in completion.get("choices", [])])
                completion["usage"] = usage
            self._settle(ticket, route, usage, first_byte=None)
            return completion
        last = last or self._none_left(ticket)
        await self._refund(ticket, None, last)
        raise last

    # -- call: stream --------------------------------------------------------
    async def open_stream(self, ticket: Ticket) -> RelayStream:
        """Fail over until a channel yields its first chunk; then the caller gets a RelayStream."""
        last: RelayError | None = None
        for route in ticket.routes:
            if not self.router.claim(route.channel):
                continue
            chunks = route.provider.stream(ticket.call_for(route))
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                last = UpstreamError("上游返回了空的流", "the upstream sent an empty stream")
            except UpstreamFailure as exc:
                last = exc
            except BaseException as exc:
                await chunks.aclose()
                self.router.released(route.channel)
                await self._refund(ticket, route, exc)
                raise
            else:
                return RelayStream(self, ticket, route, chunks, first)
            await chunks.aclose()
            self.router.failed(route.channel, last.en)
            log.warning("channel %s failed before the first byte: %s", route.channel, last.en)
        last = last or self._none_left(ticket)
        await self._refund(ticket, None, last)
        raise last

    @staticmethod
    def _none_left(ticket: Ticket) -> Unavailable:
        """Every route was taken by another call's probe between admission and now."""
        return no_channel(ticket.request.model, retry_after=1)

    # -- finish ----------------------------------------------------------------
    def _count(self, ticket: Ticket, texts: list[str]) -> dict[str, int]:
        req = ticket.request
        prompt = tokens.count_messages(req.messages, req.model)
        completion = sum(tokens.count_text(t, req.model) for t in texts)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _settle(self, ticket: Ticket, route: Route, usage: dict[str, Any], *, first_byte: float | None,
                status: int = 200, partial: bool = False, error: str | None = None) -> None:
        self._finish(ticket)
        self._record(ticket.request, ticket.principal, route.channel, day=ticket.charge.day, status=status,
                     started=ticket.started, charged=True, usage=usage, first_byte=first_byte, partial=partial,
                     error=error)

    async def _refund(self, ticket: Ticket, route: Route | None, exc: BaseException,
                      usage: dict[str, Any] | None = None, first_byte: float | None = None) -> None:
        if ticket.finished:
            return
        ticket.finished = True  # at once, so nothing settles it twice; counted out once recorded
        try:
            await self.quota.refund(ticket.charge)
        finally:
            if isinstance(exc, RelayError):
                status, error = exc.status, exc.en
            elif isinstance(exc, asyncio.CancelledError):  # the caller left before the reply began
                status, error = CLIENT_GONE, "client went away"
            else:
                status, error = 500, type(exc).__name__
            self._record(ticket.request, ticket.principal, route.channel if route else None,
                         day=ticket.charge.day, status=status,
                         started=ticket.started, charged=False, usage=usage, first_byte=first_byte,
                         partial=first_byte is not None, error=error)
            self._count_out()

    def _finish(self, ticket: Ticket) -> None:
        if not ticket.finished:
            ticket.finished = True
            self.quota.settled(ticket.charge)  # charged: the call no longer holds the count as "in flight"
            self._count_out()

    def _count_out(self) -> None:
        self.inflight -= 1
        if not self.inflight:
            self._idle.set()

    def _record(self, req: ChatRequest, principal: Principal, channel: str | None, *, day: str, status: int,
                started: float, charged: bool, usage: dict[str, Any] | None = None,
                first_byte: float | None = None, partial: bool = False, error: str | None = None) -> None:
        now = utcnow()
        usage = usage or {}
        self.recorder.record({
            "created_at": now, "day": day, "account_id": principal.account_id,
            "token_id": principal.token_id, "model": req.model, "channel": channel, "door": req.door,
            "stream": req.stream, "status": status, "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "first_byte_ms": None if first_byte is None else round((first_byte - started) * 1000, 3),
            "total_ms": round((time.perf_counter() - started) * 1000, 3), "charged": charged,
            "partial": partial, "error": error[:500] if error else None,
        })


def _address_in(address: str | None, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ip_address(address or "")
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _never() -> bool:
    return False


class RelayStream:
    """The chunks of one admitted stream. Iterate ``chunks()``; settling, refunding and
    recording happen when it ends, however it ends:

    - the upstream finished: charged, recorded 200;
    - the upstream failed mid-way: refunded, recorded with its error, partial; the error is re-raised
      for the door to write as its own error frame;
    - the caller went away (the iterator is closed or its task cancelled): charged, recorded 499, partial;
    - the relay cut it (``cut`` set, or cancelled while ``client_left()`` says the caller is still
      there: the shutdown grace period is over): refunded, recorded 503, partial.

    ``close()`` settles a stream whose ``chunks()`` never ran or never finished; it is safe to call twice.
    """

    SHUTTING_DOWN = Unavailable("中转服务正在重启，请重试", "the relay is restarting; please retry", retry_after=1)

    def __init__(self, relay: Relay, ticket: Ticket, route: Route,
                 upstream: AsyncIterator[dict[str, Any]], first: dict[str, Any]) -> None:
        self.relay = relay
        self.ticket = ticket
        self.route = route
        self._upstream = upstream
        self._first = first
        self.first_byte = time.perf_counter()
        self.usage: dict[str, Any] | None = None
        self.texts: dict[int, list[str]] = {}
        self.finish_reason: str | None = None
        self.cut = False
        self.client_left: Callable[[], bool] = _never  # the door's: did the caller hang up?

    async def close(self) -> None:
        if self.ticket.finished:
            return
        await self._upstream.aclose()
        await self._gone()

    async def _gone(self) -> None:
        relay, route, ticket = self.relay, self.route, self.ticket
        relay.router.released(route.channel)
        if self.cut:
            await relay._refund(ticket, route, self.SHUTTING_DOWN, usage=self.totals(), first_byte=self.first_byte)
        else:
            relay._settle(ticket, route, self.totals(), first_byte=self.first_byte, status=CLIENT_GONE,
                          partial=True, error="client went away")

    @property
    def id(self) -> str:
        return self._first.get("id") or "chatcmpl-lightrelay"

    @property
    def created(self) -> int:
        return self._first.get("created") or int(time.time())

    def _observe(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                self.texts.setdefault(choice.get("index", 0), []).append(content)
            if choice.get("finish_reason") and choice.get("index", 0) == 0:
                self.finish_reason = choice["finish_reason"]

    def totals(self) -> dict[str, Any]:
        if self.usage and (self.usage.get("prompt_tokens") or self.usage.get("completion_tokens")):
            return self.usage
        self.usage = self.relay._count(self.ticket, ["".join(t) for t in self.texts.values()])
        return self.usage

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        relay, route, ticket = self.relay, self.route, self.ticket
        outcome = "gone"
        try:
            chunk = self._first
            while True:
                self._observe(chunk)
                yield chunk
                chunk = await anext(self._upstream)
        except StopAsyncIteration:
            outcome = "ok"
        except asyncio.CancelledError:
            if not self.client_left():  # cancelled, and not because the caller left: the relay cut it
                self.cut = True
            raise
        except UpstreamFailure as exc:
            outcome = "failed"
            relay.router.failed(route.channel, exc.en)
            await relay._refund(ticket, route, exc, usage=self.totals(), first_byte=self.first_byte)
            raise
        except Exception as exc:  # not the caller's doing: refund, and end the stream with an error frame
            outcome = "failed"
            log.exception("stream from channel %s broke", route.channel)
            relay.router.released(route.channel)
            failure = UpstreamError("上游流异常中断", "the stream broke unexpectedly")
            await relay._refund(ticket, route, failure, usage=self.totals(), first_byte=self.first_byte)
            raise failure from exc
        finally:
            await self._upstream.aclose()
            if outcome == "ok":
                relay.router.succeeded(route.channel)
                relay._settle(ticket, route, self.totals(), first_byte=self.first_byte)
            elif outcome == "gone" and not ticket.finished:
                await self._gone()
