"""``lightrelay serve``: run the relay."""

from __future__ import annotations

import asyncio
import sys

import click

from lightrelay.cli.common import _settings, main
from lightrelay.settings import Settings


# -- serve ---------------------------------------------------------------------
@main.command()
@click.option("--host", default=None, help="address to listen on (default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default 8080)")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="processes")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the relay."""
    import logging

    import uvicorn

    from lightrelay.db.engine import migrate_in_child
    from lightrelay.http import server

    settings = _settings()
    settings.secret()  # a missing or weak secret stops the start here, as one line
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # once, before any worker starts; in a child process, so Alembic never loads in a worker
        migrate_in_child(settings)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    _say_where_the_console_is(settings, host or settings.host, port or settings.port)
    before, nofile = server.raise_nofile()  # the workers inherit it
    header_timeout, max_connections = server.limits(settings)
    logging.getLogger("lightrelay").info(
        "open-file limit %d%s; at most %d open connections per process; request headers within %.0f s; "
        "idle connections closed after %.0f s", nofile, f" (raised from {before})" if before != nofile else "",
        max_connections, header_timeout, settings.keepalive_timeout_seconds)
    # The quota writer and usage threads share the GIL with the event loop: hand it back within
    # 0.5 ms instead of Python's default 5 ms, which otherwise shows up as a 5 ms tail on calls.
    sys.setswitchinterval(0.0005)
    if workers > 1:  # metrics from every worker, summed on any worker's /metrics
        _prometheus_multiproc_dir(settings)
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For/-Proto from 127.0.0.1 whatever
    # LIGHTRELAY_TRUSTED_PROXIES says; the relay reads them itself, from the proxies it is told to trust.
    uvicorn.run(
        "lightrelay.http.app:app_factory", factory=True, host=host or settings.host, port=port or settings.port,
        workers=workers, loop="auto", http=server.GuardedProtocol, ws="none", access_log=False, proxy_headers=False,
        log_level=settings.log_level.lower(), timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        timeout_keep_alive=max(1, round(settings.keepalive_timeout_seconds)),
    )


def _say_where_the_console_is(settings: Settings, host: str, port: int) -> None:
    """First thing a new operator needs: where the console is, and how to make its first admin."""
    import logging

    from lightrelay.db.engine import make_engine
    from lightrelay.services.accounts import has_admin

    async def go() -> bool:
        engine = make_engine(settings)
        try:
            return await has_admin(engine)
        finally:
            await engine.dispose()

    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
    hint = "" if asyncio.run(go()) else " — no admin yet: lightrelay user add you@example.com --admin --password '…'"
    logging.getLogger("lightrelay").info("console: %s%s", url, hint)


def _prometheus_multiproc_dir(settings: Settings) -> None:
    import os
    import tempfile
    from pathlib import Path

    path = settings.prometheus_multiproc_dir
    if path:  # the operator's: clear the previous run's files
        for stale in Path(path).glob("*.db"):
            stale.unlink()
    else:
        path = tempfile.mkdtemp(prefix="lightrelay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # the workers inherit it


# -- users ---------------------------------------------------------------------
