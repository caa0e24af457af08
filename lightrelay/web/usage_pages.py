"""Usage: the account's own calls (filtered, paged by a keyset cursor, exported as CSV) and a daily chart."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from lightrelay.services import usage, usage_stats
from lightrelay.web.console import Console, Ctx
from lightrelay.web.me import today

FILTER_KEYS = ("email", "token", "model", "channel", "door", "status", "since", "until")

PAGE_SIZE = 20


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw and raw.strip() else None
    except ValueError:
        return None


def _day(raw: str | None, tz: Any, *, end: bool) -> datetime | None:
    try:
        day = date.fromisoformat((raw or "").strip())
    except ValueError:
        return None
    return datetime.combine(day + timedelta(days=1 if end else 0), time.min, tzinfo=tz).astimezone(UTC)


def query_of(ctx: Ctx) -> dict[str, str]:
    """The filter fields of the request (as typed), for the form and the links."""
    q = ctx.request.query_params
    return {k: q.get(k, "")[:200] for k in FILTER_KEYS if q.get(k, "").strip()}


def filters_of(ctx: Ctx, *, account_id: int | None) -> usage_stats.Filters:
    """The usage filters from the query string, for ``account_id`` (None: every account). A malformed
    value filters nothing rather than failing the page."""
    q, tz = ctx.request.query_params, ctx.state.clock.tz
    status_raw = q.get("status", "").strip().lower()
    status, status_class = _int(status_raw), False
    if status_raw in ("4xx", "5xx", "2xx"):
        status, status_class = int(status_raw[0]) * 100, True
    return usage_stats.Filters(
        account_id=account_id, token_id=_int(q.get("token")), model=q.get("model") or None, channel=q.get("channel") or None,
        door=q.get("door") or None, status=status, status_class=status_class,
        since=_day(q.get("since"), tz, end=False), until=_day(q.get("until"), tz, end=True))


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


async def calls_page(ctx: Ctx, *, account_id: int | None,
                     filters: usage_stats.Filters | None = None) -> tuple[list[dict[str, Any]], int | None, bool]:
    """A page of calls, newest first: (rows, the ``before`` cursor of this page or None, more?). The next
    page is ``?before=<last row's id>``: an index range, never an OFFSET over every earlier row."""
    before = _int(ctx.request.query_params.get("before"))
    filters = filters or filters_of(ctx, account_id=account_id)
    rows = await usage_stats.search(ctx.state.engine, filters, before=before, limit=PAGE_SIZE + 1)
    tz = ctx.state.clock.tz
    for row in rows:
        created = row["created_at"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        row["local_time"] = created.astimezone(tz).strftime("%m-%d %H:%M:%S")
    return rows[:PAGE_SIZE], before, len(rows) > PAGE_SIZE


def csv_response(ctx: Ctx, filters: usage_stats.Filters, name: str) -> Response:
    """The matching calls as a CSV download, streamed page by page."""
    return StreamingResponse(usage_stats.export_csv(ctx.state.engine, filters), media_type="text/csv; charset=utf-8",
                             headers={"content-disposition": f'attachment; filename="{name}"'})


def routes(console: Console) -> list[BaseRoute]:
    @console.page(login=True)
    async def usage_page(ctx: Ctx) -> Response:
        account = ctx.account or {}
        await ctx.state.recorder.flush()  # show the call that just ended
        rows, before, more = await calls_page(ctx, account_id=account["id"])
        days = await usage.daily_totals(ctx.state.engine, account_id=account["id"], days=30)
        query = query_of(ctx)
        query.pop("email", None)
        query.pop("channel", None)
        return console.render(ctx, "usage.html", rows=rows, page=before, more=more, chart=chart_data(days),
                              today=await today(ctx), q=query, pager_query=urlencode(query))

    @console.page(login=True)
    async def usage_csv(ctx: Ctx) -> Response:
        filters = filters_of(ctx, account_id=(ctx.account or {})["id"])
        return console.finish(ctx, csv_response(ctx, filters, "usage.csv"))

    return [Route("/usage", usage_page, methods=["GET"]), Route("/usage.csv", usage_csv, methods=["GET"])]
