"""The ``lightrelay`` command (DESIGN.md §7). Every command works on a fresh data dir:
the first one that needs the database creates and migrates it."""

from __future__ import annotations

import asyncio
import sys
import time
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


# -- serve ---------------------------------------------------------------------
@main.command()
@click.option("--host", default=None, help="address to listen on (default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default 8080)")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="processes")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the relay."""
    import logging

    import uvicorn

    from lightrelay.db.engine import migrate_sync
    from lightrelay.http import server

    settings = _settings()
    settings.secret()  # a missing or weak secret stops the start here, as one line
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    migrate_sync(settings)  # once, before any worker starts
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
    uvicorn.run(
        "lightrelay.http.app:app_factory", factory=True, host=host or settings.host, port=port or settings.port,
        workers=workers, loop="auto", http=server.GuardedProtocol, access_log=False,
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
@main.group()
def user() -> None:
    """Accounts."""


@user.command("add")
@click.argument("email")
@click.option("--password", default=None, help="lets the account log in to the console")
@click.option("--daily-limit", default=None, help="calls per day: a number or 'unlimited' (default from settings)")
@click.option("--gpt4", is_flag=True, help="allow gpt-4 models")
@click.option("--admin", is_flag=True, help="make an admin account")
def user_add(email: str, password: str | None, daily_limit: str | None, gpt4: bool, admin: bool) -> None:
    """Create an active account and print its first API token (last line)."""
    from lightrelay.services import accounts

    limit = _limit(daily_limit)

    async def go(settings: Settings, engine) -> str:  # noqa: ANN001
        lim = limit if daily_limit is not None else settings.default_daily_limit
        account_id = await accounts.create_account(engine, email=email, password=password, daily_limit=lim,
                                                   gpt4=gpt4, is_admin=admin)
        return await accounts.add_token(engine, account_id=account_id, name="default")

    token = _run(go)
    click.echo(f"created {email.strip().lower()}")
    click.echo(token)


@user.command("list")
@click.option("--search", default="", help="part of an email")
def user_list(search: str) -> None:
    """List accounts with today's count."""
    from lightrelay.clock import Clock
    from lightrelay.services import accounts
    from lightrelay.services.quota import SqlCounter

    async def go(settings: Settings, engine) -> list[tuple[dict, int]]:  # noqa: ANN001
        counter, today = SqlCounter(engine), Clock(settings.tz).today()
        rows = await accounts.list_accounts(engine, search=search)
        return [(r, await counter.get(r["id"], today)) for r in rows]

    rows = _run(go)
    click.echo(f"{'email':32} {'today':>7} {'limit':>9} gpt4  admin disabled")
    for r, used in rows:
        limit = "unlimited" if r["daily_limit"] is None else r["daily_limit"]
        click.echo(f"{r['email']:32} {used:>7} {limit!s:>9} {'yes' if r['gpt4'] else 'no':5} "
                   f"{'yes' if r['is_admin'] else 'no':5} {'yes' if r['disabled'] else 'no'}")


@user.command("set")
@click.argument("email")
@click.option("--daily-limit", default=None, help="a number or 'unlimited'")
@click.option("--image-limit", default=None,
              help="images per day: a number, 'unlimited', or 'default' (LIGHTRELAY_DEFAULT_IMAGE_LIMIT)")
@click.option("--gpt4/--no-gpt4", default=None)
@click.option("--disable/--enable", "disabled", default=None)
@click.option("--admin/--no-admin", default=None)
@click.option("--password", default=None)
def user_set(email: str, daily_limit: str | None, image_limit: str | None, gpt4: bool | None,
             disabled: bool | None, admin: bool | None, password: str | None) -> None:
    """Change an account."""
    from lightrelay.services import accounts

    changes: dict[str, Any] = {"gpt4": gpt4, "disabled": disabled, "is_admin": admin, "password": password}
    if daily_limit is not None:
        changes["daily_limit"] = _limit(daily_limit)
    if image_limit is not None:
        changes["image_limit"] = _image_limit(image_limit)

    async def go(settings: Settings, engine) -> dict:  # noqa: ANN001
        return await accounts.update_account(engine, email=email, **changes)

    row = _run(go, notify="auth")
    limit = "unlimited" if row["daily_limit"] is None else row["daily_limit"]
    images = {None: "default", -1: "unlimited"}.get(row.get("image_limit"), row.get("image_limit"))
    click.echo(f"{row['email']}: daily limit {limit}, image limit {images}, gpt4 {'yes' if row['gpt4'] else 'no'}, "
               f"{'disabled' if row['disabled'] else 'enabled'}")


# -- tokens --------------------------------------------------------------------
@main.group()
def token() -> None:
    """API tokens."""


@token.command("add")
@click.argument("email")
@click.option("--name", default="", help="a name to tell tokens apart")
@click.option("--models", default=None, help="only these models, comma-separated (others: 403 model_not_allowed)")
@click.option("--expires", default=None, metavar="YYYY-MM-DD",
              help="valid through this day in LIGHTRELAY_TIMEZONE (then 401 token_expired)")
@click.option("--ips", default=None, metavar="CIDR,…", help="only from these addresses (others: 403 ip_not_allowed)")
@click.option("--rpm", default=None, help="requests per minute (over it: 429 with Retry-After)")
@click.option("--daily-limit", "token_daily", default=None, help="calls per day, counted inside the account's")
def token_add(email: str, name: str, models: str | None, expires: str | None, ips: str | None, rpm: str | None,
              token_daily: str | None) -> None:
    """Make a new token for an account (printed alone on the last line)."""
    from lightrelay.services import accounts

    async def go(settings: Settings, engine) -> str:  # noqa: ANN001
        limits = accounts.TokenLimits.parse(models=models, expires=expires, ips=ips, rpm=rpm,
                                            daily_limit=token_daily, tz=settings.tz)
        account = await accounts.get_account(engine, email=email)
        return await accounts.add_token(engine, account_id=account["id"], name=name, limits=limits)

    click.echo(_run(go))


@token.command("revoke")
@click.argument("token_value", metavar="TOKEN")
def token_revoke(token_value: str) -> None:
    """Revoke a token (running relays stop accepting it within seconds)."""
    from lightrelay.services import accounts

    async def go(settings: Settings, engine) -> None:  # noqa: ANN001
        await accounts.revoke_token(engine, token=token_value)

    _run(go, notify="auth")
    click.echo("revoked")


# -- redemption codes ----------------------------------------------------------
@main.group()
def code() -> None:
    """Redemption codes (兑换码): extra calls, image calls, GPT-4 access."""


@code.command("add")
@click.option("--calls", type=click.IntRange(0, 10_000_000), required=True, help="extra calls each code gives")
@click.option("--count", type=click.IntRange(1, 10_000), default=1, show_default=True, help="how many codes")
@click.option("--gpt4", is_flag=True, help="the code also grants GPT-4 access")
@click.option("--image-calls", type=click.IntRange(0, 10_000_000), default=0, help="extra image generations")
@click.option("--expires", default=None, metavar="YYYY-MM-DD", help="redeemable through this day")
@click.option("--note", default="", help="a note for the list (at most 200 characters)")
def code_add(calls: int, count: int, gpt4: bool, image_calls: int, expires: str | None, note: str) -> None:
    """Make a batch of codes and print them, one per line (the only time they are shown)."""
    from lightrelay.services import accounts, redeem

    async def go(settings: Settings, engine) -> list[str]:  # noqa: ANN001
        when = accounts.parse_day_end(expires, settings.tz) if expires else None
        _batch, codes = await redeem.add_codes(engine, calls=calls, count=count, gpt4=gpt4,
                                               image_calls=image_calls, expires_at=when, note=note)
        return codes

    click.echo("\n".join(_run(go)))


@code.command("list")
@click.option("--unused", is_flag=True, help="only codes that can still be redeemed")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=1000, show_default=True)
def code_list(unused: bool, limit: int) -> None:
    """List codes (masked) with their state."""
    from lightrelay.services import redeem

    async def go(settings: Settings, engine) -> list[dict]:  # noqa: ANN001
        return await redeem.list_codes(engine, unused=unused, limit=limit)

    click.echo(f"{'code':12} {'batch':12} {'calls':>8} {'images':>6} gpt4 {'expires':10} {'state':8} used by / note")
    for r in _run(go):
        state = redeem.state_of(r)
        expires = f"{r['expires_at']:%Y-%m-%d}" if r["expires_at"] else "-"
        click.echo(f"{r['masked']:12} {r['batch']:12} {r['calls']:>8} {r['image_calls']:>6} "
                   f"{'yes' if r['gpt4'] else 'no':4} {expires:10} {state:8} "
                   f"{r['used_by_email'] or ''} {r['note']}".rstrip())


@code.command("disable")
@click.argument("code_value", metavar="CODE")
def code_disable(code_value: str) -> None:
    """Disable an unused code."""
    from lightrelay.services import redeem

    async def go(settings: Settings, engine) -> None:  # noqa: ANN001
        await redeem.disable_code(engine, code=code_value)

    _run(go)
    click.echo("disabled")


# -- models --------------------------------------------------------------------
@main.group()
def model() -> None:
    """Models: what one call costs."""


@model.command("set")
@click.argument("name", metavar="MODEL")
@click.option("--weight", type=click.IntRange(1, 10_000), required=True,
              help="one call of MODEL costs this many of the daily count and of the extra balance")
def model_set(name: str, weight: int) -> None:
    """Set a model's weight (default 1)."""
    from lightrelay.services import weights

    async def go(settings: Settings, engine) -> None:  # noqa: ANN001
        await weights.set_weight(engine, model=name, weight=weight)

    _run(go, notify="channels")
    click.echo(f"{name}: weight {weight}")


# -- channels ------------------------------------------------------------------
@main.group()
def channel() -> None:
    """Upstream channels."""


@channel.command("add")
@click.argument("name")
@click.option("--base-url", default="", help="openai: what an OpenAI SDK takes as base_url, e.g. "
              "https://api.openai.com/v1; azure: https://NAME.openai.azure.com; anthropic and gemini: optional")
@click.option("--api-key", "api_keys", multiple=True,
              help="the upstream's API key (stored encrypted); give it several times for several keys, used in turn")
@click.option("--api-keys-file", type=click.File("r"), default=None,
              help="a file of API keys, one a line (# comments allowed)")
@click.option("--models", required=True, help="public names, each optionally =upstream-name: a,b=upstream-b "
                                               "(azure: =deployment-name)")
@click.option("--priority", type=int, default=0, show_default=True, help="higher is tried first")
@click.option("--weight", type=click.IntRange(1, 10_000), default=1, show_default=True)
@click.option("--type", "type_", type=click.Choice(["openai", "anthropic", "gemini", "azure", "local"]),
              default="openai", show_default=True)
@click.option("--api-version", default=None,
              help="azure: the api-version (default LIGHTRELAY_AZURE_API_VERSION); anthropic: anthropic-version")
@click.option("--timeout", type=click.FloatRange(0.1, 86_400), default=None, help="total seconds per call")
@click.option("--connect-timeout", type=click.FloatRange(0.1, 3600), default=None, help="seconds to connect")
@click.option("--first-byte-timeout", type=click.FloatRange(0.1, 3600), default=None,
              help="seconds until the reply (a stream's first event) starts; then the next channel is tried")
@click.option("--idle-timeout", type=click.FloatRange(0.1, 3600), default=None,
              help="seconds a stream may go quiet between events")
def channel_add(name: str, base_url: str, api_keys: tuple[str, ...], api_keys_file: Any, models: str,
                priority: int, weight: int, type_: str, api_version: str | None, timeout: float | None,
                connect_timeout: float | None, first_byte_timeout: float | None, idle_timeout: float | None) -> None:
    """Add an upstream channel."""
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    keys = [*api_keys, *(channels.read_key_file(api_keys_file.read()) if api_keys_file else [])]

    async def go(settings: Settings, engine) -> None:  # noqa: ANN001
        await channels.add_channel(engine, KeyBox(settings.secret()), name=name, base_url=base_url,
                                   api_keys=keys, api_version=api_version,
                                   models=channels.parse_models(models), type=type_,
                                   priority=priority, weight=weight, timeout=timeout,
                                   connect_timeout=connect_timeout, first_byte_timeout=first_byte_timeout,
                                   idle_timeout=idle_timeout)

    _run(go, notify="channels")
    click.echo(f"added channel {name}")


@channel.command("list")
def channel_list() -> None:
    """List channels (API keys masked)."""
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    async def go(settings: Settings, engine) -> list[dict]:  # noqa: ANN001
        box = KeyBox(settings.secret())
        return [channels.public_view(r, box) for r in await channels.load_channels(engine)]

    rows = _run(go)
    if not rows:
        click.echo("no channels: the built-in local model serves the default model names")
    _echo_local_status()
    for r in rows:
        models = ",".join(k if k == v else f"{k}={v}" for k, v in r["models"].items())
        keys = " ".join(f"#{k['n']}={k['key']}" + (" (retired)" if k["retired"] else "") for k in r["keys"])
        click.echo(f"{r['name']:16} {r['type']:6} {'enabled ' if r['enabled'] else 'disabled'} "
                   f"prio={r['priority']} weight={r['weight']} {r['base_url']} "
                   f"key{'s' if len(r['keys']) > 1 else ''}={keys or '-'} models={models}")
        for k in r["keys"]:
            if k["retired"]:
                when = f" at {k['retired_at']:%Y-%m-%d %H:%M:%S}" if k["retired_at"] else ""
                click.echo(f"{'':16}   key #{k['n']} retired{when}: {k['retired']} "
                           f"(lightrelay channel enable-key {r['name']} {k['n']})")


def _echo_local_status() -> None:
    """The built-in model's state as the running relay last reported it (its child process)."""
    from lightrelay.providers.local import describe_status, read_status

    status = read_status(load_settings().local_status_file)
    if status is not None:
        click.echo(f"{'builtin-local':16} local  {describe_status(status)} (relay pid {status['relay_pid']})")


def _set_enabled(name: str, enabled: bool) -> None:
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    async def go(settings: Settings, engine) -> None:  # noqa: ANN001
        await channels.update_channel(engine, KeyBox(settings.secret()), name=name, enabled=enabled)

    _run(go, notify="channels")
    click.echo(f"{'enabled' if enabled else 'disabled'} channel {name}")


@channel.command("disable")
@click.argument("name")
def channel_disable(name: str) -> None:
    """Stop routing calls to a channel."""
    _set_enabled(name, False)


@channel.command("enable")
@click.argument("name")
def channel_enable(name: str) -> None:
    """Route calls to a channel again."""
    _set_enabled(name, True)


@channel.command("enable-key")
@click.argument("name")
@click.argument("key", metavar="KEY")
def channel_enable_key(name: str, key: str) -> None:
    """Put a retired API key back in use: KEY is its number in `channel list`, the key itself, or all."""
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    async def go(settings: Settings, engine) -> list[int]:  # noqa: ANN001
        return await channels.enable_key(engine, KeyBox(settings.secret()), name=name, which=key)

    numbers = _run(go, notify="channels")
    click.echo(f"channel {name}: key {', '.join(f'#{n}' for n in numbers)} back in use")


@channel.command("models")
@click.argument("name")
@click.option("--apply", "apply_", is_flag=True, help="set the channel's models to exactly these (each by its own name)")
def channel_models(name: str, apply_: bool) -> None:
    """Ask the upstream which models it serves (OpenAI /models, Anthropic /v1/models, Gemini models.list)."""
    from lightrelay.channel_test import upstream_models
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    async def go(settings: Settings, engine) -> list[str]:  # noqa: ANN001
        names = await upstream_models(settings, engine, name=name)
        if apply_ and names:
            await channels.update_channel(engine, KeyBox(settings.secret()), name=name,
                                          models={m: m for m in names})
        return names

    names = _run(go, notify="channels" if apply_ else None)
    for n in names:
        click.echo(n)
    if apply_:
        click.echo(f"channel {name} now serves {len(names)} models" if names else
                   f"the upstream listed no models; channel {name} is unchanged")


@channel.command("test")
@click.argument("name")
def channel_test(name: str) -> None:
    """Send one tiny chat call to a channel and show the latency."""
    from lightrelay.channel_test import test_channel

    async def go(settings: Settings, engine) -> tuple[float, str]:  # noqa: ANN001
        return await test_channel(settings, engine, name=name)

    started = time.perf_counter()
    ms, reply = _run(go)
    click.echo(f"ok: {name} answered in {ms:.0f} ms ({(time.perf_counter() - started) * 1000:.0f} ms in all): "
               f"{reply[:60]!r}")


# -- usage ---------------------------------------------------------------------
class _UsageGroup(click.Group):
    """``usage [EMAIL] [options]`` or ``usage prune --before DATE``: a first word that is not a
    subcommand is the EMAIL."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {opt for p in self.params if isinstance(p, click.Option) and not p.is_flag for opt in p.opts}
        i = 0
        while i < len(args):
            if args[i] in takes_value:
                i += 2
            elif args[i].startswith("-"):
                i += 1
            else:
                if args[i] not in self.commands:
                    args = [*args[:i], "--email", *args[i:]]
                break
        return super().parse_args(ctx, args)


def _when(value: str | None, tz: Any, *, end: bool) -> Any:
    """YYYY-MM-DD (a day in LIGHTRELAY_TIMEZONE; ``end``: up to that day's end) or an ISO time → UTC."""
    from datetime import UTC, date, datetime, time, timedelta

    if value is None:
        return None
    try:
        if len(value.strip()) == 10:
            day = date.fromisoformat(value.strip()) + timedelta(days=1 if end else 0)
            return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: use YYYY-MM-DD or an ISO time") from None
    return (when if when.tzinfo else when.replace(tzinfo=tz)).astimezone(UTC)


@main.group(cls=_UsageGroup, invoke_without_command=True)
@click.option("--email", hidden=True, default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="every matching call as CSV on stdout (streamed)")
@click.option("--since", default=None, help="from this day (YYYY-MM-DD, LIGHTRELAY_TIMEZONE) or ISO time")
@click.option("--until", default=None, help="through this day (YYYY-MM-DD) or before this ISO time")
@click.option("--model", default=None)
@click.option("--channel", "channel_name", default=None)
@click.option("--door", default=None)
@click.option("--status", type=int, default=None)
@click.pass_context
def usage(ctx: click.Context, email: str | None, limit: int, as_csv: bool, since: str | None, until: str | None,
          model: str | None, channel_name: str | None, door: str | None, status: int | None) -> None:
    """Recent calls and daily totals (everyone's, or one account's: usage EMAIL); --csv exports."""
    if ctx.invoked_subcommand is not None:
        return
    if as_csv:
        _usage_csv(email, since, until, model, channel_name, door, status)
        return
    from lightrelay.services import accounts
    from lightrelay.services import usage as usage_svc

    async def go(settings: Settings, engine) -> tuple[list, list]:  # noqa: ANN001
        account_id = (await accounts.get_account(engine, email=email))["id"] if email else None
        return (await usage_svc.recent_calls(engine, account_id=account_id, limit=limit),
                await usage_svc.daily_totals(engine, account_id=account_id, days=7))

    calls, days = _run(go)
    click.echo("day         calls charged errors prompt_tok compl_tok  avg_ms")
    for d in days:
        click.echo(f"{d['day']}  {d['calls']:>5} {d['charged'] or 0:>7} {d['errors'] or 0:>6} "
                   f"{d['prompt_tokens'] or 0:>10} {d['completion_tokens'] or 0:>9} {d['avg_ms'] or 0:>7.1f}")
    click.echo("")
    click.echo("time                 email                    model                channel      door   "
               "stream status prompt compl  ttfb_ms total_ms")
    for c in calls:
        ttfb = "-" if c["first_byte_ms"] is None else f"{c['first_byte_ms']:.1f}"
        click.echo(f"{c['created_at']:%Y-%m-%d %H:%M:%S}  {(c['email'] or '-')[:24]:24} {c['model'][:20]:20} "
                   f"{(c['channel'] or '-')[:12]:12} {c['door']:6} {'yes' if c['stream'] else 'no':6} "
                   f"{c['status']:>6} {c['prompt_tokens']:>6} {c['completion_tokens']:>5} {ttfb:>8} "
                   f"{c['total_ms']:>8.1f}" + (f"  {c['error']}" if c["error"] else ""))


def _usage_csv(email: str | None, since: str | None, until: str | None, model: str | None, channel_name: str | None,
               door: str | None, status: int | None) -> None:
    from lightrelay.services import accounts, usage_stats

    async def go(settings: Settings, engine) -> None:  # noqa: ANN001
        account_id = (await accounts.get_account(engine, email=email))["id"] if email else None
        filters = usage_stats.Filters(account_id=account_id, model=model, channel=channel_name, door=door,
                                      status=status, since=_when(since, settings.tz, end=False),
                                      until=_when(until, settings.tz, end=True))
        async for chunk in usage_stats.export_csv(engine, filters):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    _run(go)


@usage.command("prune")
@click.option("--before", "before", required=True, metavar="YYYY-MM-DD",
              help="delete the calls of days before this one (the daily and hourly totals stay)")
def usage_prune(before: str) -> None:
    """Delete old call rows, keeping the totals."""
    from datetime import date

    from lightrelay.services import usage_stats

    try:
        day = date.fromisoformat(before.strip()).isoformat()
    except ValueError:
        raise click.BadParameter(f"{before!r}: use YYYY-MM-DD", param_hint="--before") from None

    async def go(settings: Settings, engine) -> int:  # noqa: ANN001
        return await usage_stats.prune(engine, before_day=day)

    click.echo(f"deleted {_run(go)} calls before {day}")


# -- chat (a client of a running relay) ----------------------------------------
@main.command()
@click.argument("prompt")
@click.option("--model", default=None, help="model name (default: the relay's default)")
@click.option("--stream", is_flag=True, help="print the reply as it is generated")
@click.option("--url", default=None, help="the relay's address (default LIGHTRELAY_URL or http://127.0.0.1:8080)")
@click.option("--token", "token_value", default=None, help="API token (default LIGHTRELAY_TOKEN)")
def chat(prompt: str, model: str | None, stream: bool, url: str | None, token_value: str | None) -> None:
    """Ask a running relay, over the light protocol."""
    from lightrelay.client import LightError
    from lightrelay.client import chat as light_chat

    settings = _settings()
    base = url or settings.url or f"http://{settings.host}:{settings.port}"
    tok = token_value or (settings.token.get_secret_value() if settings.token else None)
    if not tok:
        raise click.ClickException("no token: pass --token sk-… or set LIGHTRELAY_TOKEN")
    import aiohttp

    try:
        asyncio.run(light_chat(base, tok, prompt, model=model, stream=stream, out=sys.stdout))
    except LightError as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, aiohttp.ClientError) as exc:
        raise click.ClickException(f"cannot reach the relay at {base}: {exc}") from None
    if stream:
        click.echo("")


if __name__ == "__main__":
    main()
