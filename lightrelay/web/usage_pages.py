"""Usage: the account's own calls (paged) and a daily chart."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from lightrelay.services import usage
from lightrelay.web.console import Console, Ctx
from lightrelay.web.me import today

PAGE_SIZE = 20


def page_number(ctx: Ctx) -> int:
    try:
        return max(1, min(10_000, int(ctx.request.query_params.get("page", "1"))))
    except ValueError:
        return 1


def chart_data(days: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Daily totals (newest first, as the service gives them) as oldest-first series for the chart."""
    days = list(reversed(days))
    return {
        "labels": [d["day"] for d in days],
        "calls": [int(d["calls"] or 0) for d in days],
        "charged": [int(d["charged"] or 0) for d in days],
        "errors": [int(d["errors"] or 0) for d in days],
        "tokens": [int((d["prompt_tokens"] or 0) + (d["completion_tokens"] or 0)) for d in days],
        "avg_ms": [round(float(d["avg_ms"] or 0), 1) for d in days],
    }


async def calls_page(ctx: Ctx, *, account_id: int | None) -> tuple[list[dict[str, Any]], int, bool]:
    number = page_number(ctx)
    rows = await usage.recent_calls(ctx.state.engine, account_id=account_id, limit=PAGE_SIZE + 1,
                                    offset=(number - 1) * PAGE_SIZE)
    tz = ctx.state.clock.tz
    for row in rows:
        created = row["created_at"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        row["local_time"] = created.astimezone(tz).strftime("%m-%d %H:%M:%S")
    return rows[:PAGE_SIZE], number, len(rows) > PAGE_SIZE


def routes(console: Console) -> list[BaseRoute]:
    @console.page(login=True)
    async def usage_page(ctx: Ctx) -> Response:
        account = ctx.account or {}
        await ctx.state.recorder.flush()  # show the call that just ended
        rows, number, more = await calls_page(ctx, account_id=account["id"])
        days = await usage.daily_totals(ctx.state.engine, account_id=account["id"], days=30)
        return console.render(ctx, "usage.html", rows=rows, page=number, more=more, chart=chart_data(days),
                              today=await today(ctx))

    return [Route("/usage", usage_page, methods=["GET"])]
