"""What every ``lightrelay`` command shares: the group, settings, and running a function against the
database (migrated first, so every command works on a fresh data dir)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from lightrelay.errors import ConfigError, RelayError
from lightrelay.settings import Settings, load_settings

T = TypeVar("T")


def _settings() -> Settings:
    return load_settings()  # a ConfigError is printed as one line by _Main


class _Main(click.Group):
    """Every command: a configuration error is one clean line with the remedy, exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"lightrelay: configuration error: {exc}", err=True)
            ctx.exit(2)


def _run(fn: Callable[..., Awaitable[T]], *, notify: str | None = None, **kwargs: Any) -> T:
    """Migrate, then run ``fn(settings=…, engine=…, **kwargs)``; relay errors become clean CLI errors.

    ``notify`` ("auth" or "channels"): with Redis configured, tell running relays at once.
    """
    from lightrelay.db.engine import make_engine, migrate

    settings = _settings()

    async def go() -> T:
        await migrate(settings)
        engine = make_engine(settings)
        try:
            result = await fn(settings=settings, engine=engine, **kwargs)
        finally:
            await engine.dispose()
        if notify and settings.redis_url:
            from lightrelay.db.redis_link import publish_once

            await publish_once(settings.redis_url, settings.redis_prefix, notify)
        return result

    try:
        return asyncio.run(go())
    except RelayError as exc:
        raise click.ClickException(exc.en) from None


def _image_limit(value: str) -> int | None:
    """``--image-limit``: None (the setting's default), -1 (unlimited) or a count."""
    value = value.strip().lower()
    if value == "default":
        return None
    if value == "unlimited":
        return -1
    if not value.isdigit():
        raise click.BadParameter("use a whole number ≥ 0, 'unlimited' or 'default'", param_hint="--image-limit")
    return int(value)


def _limit(value: str | None) -> int | None:
    if value is None:
        return None
    if value.strip().lower() == "unlimited":
        return None
    if not value.strip().isdigit():
        raise click.BadParameter("use a whole number ≥ 0 or 'unlimited'", param_hint="--daily-limit")
    return int(value)


@click.group(cls=_Main)
@click.version_option(package_name="lightrelay")
def main() -> None:
    """lightrelay: a self-hosted LLM API relay (light + OpenAI protocols)."""


