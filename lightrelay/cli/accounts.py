"""``lightrelay user | token | code | model``: accounts, API tokens, redemption codes, model weights."""

from __future__ import annotations

from typing import Any

import click

from lightrelay.cli.common import _image_limit, _limit, _run, main
from lightrelay.settings import Settings


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
