"""Operations endpoints: ``/healthz`` (the process is alive), ``/readyz`` (it can serve
calls: database and, when configured, Redis answer; the background workers it depends on
run) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from lightrelay.http.render import JSON
from lightrelay.metrics import CONTENT_TYPE
from lightrelay.providers.local import describe_status

CHECK_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.app.state.lr
    checks: dict[str, str] = {}
    ready = True
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["database"] = f"down: {type(exc).__name__}: {exc}"[:300]
        ready = False
    link = state.redis
    if link is not None:
        if link.up and link.watching:  # the ping that keeps ``up`` true is not running
            checks["redis"] = f"down: {link.watching}; restarting it"
            ready = False
        elif link.up:
            checks["redis"] = "ok"
        else:
            fail_open = state.settings.redis_fail_open
            checks["redis"] = (f"down: {link.reason}; calls are "
                               + ("admitted uncounted (LIGHTRELAY_REDIS_FAIL_OPEN)" if fail_open
                                  else "refused with 503 until it is back"))
            ready = ready and fail_open
    writer = state.sqlite_writer
    if writer is not None:  # the thread that writes daily counts and usage rows on SQLite
        checks["sqlite_writer"] = "ok" if writer.up else f"down: {writer.reason}; restarting it every second"[:300]
        ready = ready and writer.up
    recorder = state.recorder.task
    checks["usage_recorder"] = "ok" if recorder.up else f"down: {recorder.reason or 'not running'}; restarting it"
    ready = ready and recorder.up
    local = state.local
    if local is not None:  # the built-in model's child process
        status = local.status()
        checks["local_model"] = describe_status(status)
        # Its trouble makes the relay unready only when it is all there is to route to.
        alone = all(p is local for p in state.router.providers())
        ready = ready and not (alone and status["state"] in ("unavailable", "closed"))
    return JSON({"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    body = await asyncio.to_thread(request.app.state.lr.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
