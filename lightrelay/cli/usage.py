"""``lightrelay usage``: recent calls, CSV export, pruning."""

from __future__ import annotations

import sys
from typing import Any

import click

from lightrelay.cli.common import _run, main
from lightrelay.settings import Settings


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
