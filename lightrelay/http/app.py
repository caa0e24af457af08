"""The ASGI app: routes, and the lifespan that builds every part once and hands it down.

Nothing lives at module level: ``create_app(settings)`` builds a fresh app, so
tests run several side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from lightrelay.clock import Clock
from lightrelay.db.engine import make_engine, migrate
from lightrelay.errors import MethodNotAllowed, RelayError, UnknownPath
from lightrelay.http import (
    admin_api,
    completions,
    embeddings,
    health,
    images,
    light,
    messages,
    openai,
    responses,
)
from lightrelay.http.guard import TokenGuard
from lightrelay.http.hotpaths import HotPaths
from lightrelay.http.ids import RequestIds
from lightrelay.http.openapi import openapi_json
from lightrelay.http.render import CORS, anthropic_error, lang_of, openai_error
from lightrelay.http.server import EXIT_MARGIN_SECONDS, arm_exit_watchdog
from lightrelay.metrics import Metrics
from lightrelay.providers.base import Provider
from lightrelay.providers.registry import build_provider, new_local, new_session
from lightrelay.relay import Relay
from lightrelay.routing import Router
from lightrelay.security import KeyBox
from lightrelay.services.auth import Authenticator
from lightrelay.services.channels import load_channels, retire_key
from lightrelay.services.quota import ImageQuota, Quota, SqlCounter, SqlImageCounter
from lightrelay.services.ratelimit import Window
from lightrelay.services.sqlite_writer import SqliteWriter
from lightrelay.services.usage import UsageRecorder
from lightrelay.services.weights import load_weights
from lightrelay.settings import Settings, load_settings
from lightrelay.supervise import Supervised
from lightrelay.web import console_limits, console_routes

if TYPE_CHECKING:  # redis-py loads only when LIGHTRELAY_REDIS_URL is set (in the lifespan)
    from lightrelay.db.redis_link import RedisLink
    from lightrelay.services.redis_quota import RedisCounter

log = logging.getLogger("lightrelay")
CHANNEL_REFRESH_SECONDS = 3.0


@dataclass
class State:
    """Everything a request handler may use, built once per app."""

    settings: Settings
    engine: AsyncEngine
    clock: Clock
    keybox: KeyBox
    router: Router
    relay: Relay
    recorder: UsageRecorder
    session: aiohttp.ClientSession
    metrics: Metrics
    redis: RedisLink | None = None  # set when LIGHTRELAY_REDIS_URL is
    sqlite_writer: SqliteWriter | None = None  # set on SQLite
    images: Any = None  # quota.ImageQuota: today's images per account
    local: Any = None  # the built-in LocalProvider, made on first use
    request_ids: RequestIds = field(default_factory=RequestIds)

    async def reload_channels(self) -> None:
        self.relay.weights = await load_weights(self.engine)
        for stale in self.router.load(await load_channels(self.engine)):
            if stale is not self.local:
                await stale.close()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    keybox = KeyBox(settings.secret())
    await migrate(settings)
    engine = make_engine(settings)
    clock = Clock(settings.tz)
    metrics = Metrics(multiproc_dir=settings.prometheus_multiproc_dir)
    # SQLite: one writer thread takes the quota reservations and the usage batches off the event loop
    sqlite_writer = SqliteWriter(engine.url.database) if engine.dialect.name == "sqlite" else None
    recorder = UsageRecorder(engine, flush_seconds=settings.usage_flush_seconds,
                             batch_size=settings.usage_batch_size, on_record=metrics.observe,
                             on_write=metrics.wrote_usage,
                             writer=sqlite_writer.insert_usage if sqlite_writer else None)
    link: RedisLink | None = None
    counter: SqlCounter | SqliteWriter | RedisCounter = sqlite_writer or SqlCounter(engine)
    if settings.redis_url:  # several processes: Redis counts, and broadcasts invalidations
        from lightrelay.db.redis_link import RedisLink
        from lightrelay.services.redis_quota import RedisCounter

        link = RedisLink(settings.redis_url, prefix=settings.redis_prefix, timeout=settings.redis_timeout,
                         on_state=lambda up: metrics.backend_up.labels("redis").set(int(up)))
        counter = RedisCounter(link, engine, clock, fail_open=settings.redis_fail_open,
                               flush_seconds=settings.usage_flush_seconds)
    metrics.backend_up.labels("redis" if link else "sql").set(1)
    session = new_session()
    box: dict[str, State] = {}

    def report_local(status: dict[str, Any]) -> None:  # the local model's child changed state
        from lightrelay.providers.local import write_status

        metrics.backend_up.labels("local_model").set(int(status["state"] == "ready"))
        write_status(settings.local_status_file, status)

    def make_provider(row: dict[str, Any]) -> Provider:
        state = box["state"]

        def local() -> Provider:
            if state.local is None:
                state.local = new_local(settings, on_state=report_local)
            return state.local

        return build_provider(row, settings=settings, session=session, keybox=keybox, local=local,
                              store_retired=store_retired)

    async def store_retired(row: dict[str, Any], position: int, reason: str) -> None:
        """A key the upstream refused for good: stored, so every process and the console see it."""
        await retire_key(engine, channel_id=row["id"], position=position, reason=reason)
        if link is not None:
            link.publish_soon("channels")

    router = Router(make_provider=make_provider, default_models=settings.default_models,
                    local_auto=settings.local_model == "auto", failures_to_cool=settings.channel_failures_to_cool,
                    cooldown=settings.channel_cooldown_seconds, window=settings.channel_failure_window_seconds,
                    ratio=settings.channel_failure_ratio)
    auth = Authenticator(engine, ttl=settings.auth_cache_ttl,
                         on_invalidate=(lambda: link.publish_soon("auth")) if link else None)
    relay = Relay(auth=auth, router=router, quota=Quota(counter, clock), recorder=recorder,
                  gpt4_prefix=settings.gpt4_prefix)
    state = box["state"] = State(settings=settings, engine=engine, clock=clock, keybox=keybox, router=router,
                                 relay=relay, recorder=recorder, session=session, metrics=metrics, redis=link,
                                 sqlite_writer=sqlite_writer)
    app.state.lr = state
    # images have their own daily count: on the SQLite writer's group commits, else the database itself
    state.images = relay.images = ImageQuota(
        sqlite_writer or SqlImageCounter(engine), clock, default_limit=settings.default_image_limit,
        available=lambda: any(hasattr(p, "images") for p in router.providers()))
    metrics.queue_depth = lambda: state.local.queue_depth if state.local is not None else 0

    async def on_broadcast(topic: str) -> None:  # another process changed tokens, accounts or channels
        if topic in ("auth", "resync"):
            auth.forget()
        if topic in ("channels", "resync"):
            await state.reload_channels()

    async def refresh_forever() -> None:
        while True:
            await asyncio.sleep(CHANNEL_REFRESH_SECONDS)
            try:
                await state.reload_channels()
            except Exception:
                log.exception("reloading channels failed")

    refresher: asyncio.Task[None] | None = None
    writer_watch = Supervised("sqlite-writer-watch", sqlite_writer.watch) if sqlite_writer else None
    try:  # from here on, a failed start still closes what was opened
        await state.reload_channels()
        if state.local is not None:
            state.local.start()  # its child loads the model and checks itself in the background
        recorder.start()
        if writer_watch is not None:
            writer_watch.start()
        if link is not None and isinstance(counter, RedisCounter):
            await link.start(on_broadcast)
            for window in app.state.rate_windows:
                window.bind(link)
            relay.rpm.bind(link)
            counter.start()
        refresher = asyncio.create_task(refresh_forever(), name="channel-refresh")
        if getattr(app.state, "exit_watchdog", False):  # uvicorn's signal handlers are in place by now
            arm_exit_watchdog(settings.shutdown_grace_seconds + EXIT_MARGIN_SECONDS)
        # Everything built so far lives as long as the process: keep it out of the garbage collector's
        # full passes, which otherwise stall the event loop for tens of milliseconds under load.
        gc.collect()
        gc.freeze()
        log.info("lightrelay ready: database %s, models %s", engine.url.render_as_string(hide_password=True),
                 ", ".join(router.models()))
        yield
    finally:
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        await relay.drain(2.0)  # streams cut at the end of the grace period record their rows first
        await recorder.close(timeout=2.0)
        if writer_watch is not None:
            await writer_watch.stop()
        if link is not None and isinstance(counter, RedisCounter):
            await counter.close()
            await link.close()
        if sqlite_writer is not None:
            await sqlite_writer.close()
        metrics.close()
        for provider in router.providers():
            await provider.close()
        if state.local is not None:  # also when channels took over its names (close is idempotent)
            await state.local.close()
        await session.close()
        await engine.dispose()


async def preflight(request: Request) -> Response:
    headers = {
        **CORS,
        "access-control-allow-methods": "GET, POST, OPTIONS",
        "access-control-allow-headers": request.headers.get("access-control-request-headers", "*") or "*",
        "access-control-max-age": "86400",
    }
    return Response(status_code=204, headers=headers)


V1_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def v1_fallback(request: Request) -> Response:
    """Whatever no route under ``/v1`` took: the CORS preflight for a door's path, 405 for a
    door's path with another method, 404 for any other path; JSON in the door's own shape."""
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if getattr(route, "endpoint", None) is v1_fallback:
            continue
        match, _ = route.matches(request.scope)
        if match is Match.PARTIAL:
            allowed |= getattr(route, "methods", None) or set()
    method, path = request.method, request.url.path
    if method == "OPTIONS" and allowed:
        return await preflight(request)
    render = anthropic_error if path == "/v1/messages" or path.startswith("/v1/messages/") else openai_error
    if allowed and method != "OPTIONS":
        exc: RelayError = MethodNotAllowed(f"不支持的方法 ({method} {path})", f"Method not allowed ({method} {path})")
        return render(exc, lang_of(request), {"allow": ", ".join(sorted(allowed | {"OPTIONS"}))})
    exc = UnknownPath(f"无效的地址 ({method} {path})", f"Invalid URL ({method} {path})")
    return render(exc, lang_of(request))


DOORS = {
    ("POST", "/api/light/chat/createChatCompletion"): light.create_chat_completion,
    ("POST", "/v1/chat/completions"): openai.chat_completions,
    ("POST", "/v1/messages"): messages.create_message,
    ("POST", "/v1/responses"): responses.create_response,
}


def create_app(settings: Settings | None = None) -> HotPaths:
    """The relay as an ASGI app: the chat doors on the hot path, everything else through Starlette."""
    settings = settings or load_settings()
    routes = [Route(path, endpoint, methods=[method]) for (method, path), endpoint in DOORS.items()]
    routes += [
        Route("/v1/models", openai.list_models, methods=["GET"]),
        Route("/api/light/chat/createChatCompletion", preflight, methods=["OPTIONS"]),
        Route("/api/light/exchangeCode/appUse", light.exchange_code, methods=["POST"]),
        Route("/api/light/exchangeCode/appUse", preflight, methods=["OPTIONS"]),
        Route("/v1/models/{model:path}", openai.retrieve_model, methods=["GET"]),
        Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
        Route("/v1/completions", completions.create_completion, methods=["POST"]),
        Route("/v1/embeddings", embeddings.create_embeddings, methods=["POST"]),
        Route("/v1/images/generations", images.create_images, methods=["POST"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/admin/channels/state", admin_api.channel_states, methods=["GET"]),
    ]
    limits = console_limits(settings)
    routes += console_routes(settings, limits)
    routes.append(Route("/v1/{path:path}", v1_fallback, methods=V1_METHODS))  # last: what nothing else took
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    guard = TokenGuard(Window.from_spec("bad_token", settings.rate_bad_token), trusted=settings.trusted_networks)
    app.state.token_guard = guard
    app.state.redeem_limits = (Window.from_spec("redeem_account", settings.rate_redeem),
                               Window.from_spec("redeem_address", settings.rate_redeem))
    app.state.rate_windows = [guard.strikes, *limits.values(), *app.state.redeem_limits]  # bound to Redis by the lifespan, if any
    return HotPaths(app, DOORS)


def app_factory() -> HotPaths:
    """Entry point for ``uvicorn --factory`` (each worker process builds its own app). A served
    process also gets the exit watchdog: SIGTERM ends it within the grace period plus a few seconds."""
    app = create_app()
    app.app.state.exit_watchdog = True
    return app
