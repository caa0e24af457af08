"""Admin pages for running it as a business: redemption code batches (make, list, disable, CSV),
model weights, and the usage search (every filter, keyset pages, streamed CSV). Admin accounts only, checked on the server for every route and action."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from lightrelay.errors import RelayError
from lightrelay.services import accounts, redeem, usage_stats, weights
from lightrelay.web.console import Console, Ctx, Refused, form
from lightrelay.web.usage_pages import calls_page, csv_response, filters_of, query_of

CSV_COLUMNS = ["code", "batch", "calls", "image_calls", "gpt4", "expires_at", "note", "state", "created_at",
               "used_at", "used_by"]
PAGE = 200


def _int(raw: str | None, default: int) -> int:
    raw = (raw or "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        return -1


def routes(console: Console) -> list[BaseRoute]:
    admin = console.page(login=True, admin=True)

    async def codes_page(ctx: Ctx, *, made: list[str] | None = None, error: str | None = None,
                         status: int = 200) -> Response:
        rows = await redeem.list_codes(ctx.state.engine, limit=PAGE)
        for row in rows:
            row["state"] = redeem.state_of(row)
        return console.render(ctx, "admin_codes.html", status=status, rows=rows, made=made or [], error=error,
                              total=await redeem.count_codes(ctx.state.engine))

    @admin
    async def code_list(ctx: Ctx) -> Response:
        return await codes_page(ctx)

    @admin
    async def code_batch(ctx: Ctx) -> Response:
        data = await form(ctx.request)
        try:
            expires = data.get("expires", "").strip()
            when = accounts.parse_day_end(expires, ctx.state.settings.tz) if expires else None
            _batch, codes = await redeem.add_codes(
                ctx.state.engine, calls=_int(data.get("calls"), 0), count=_int(data.get("count"), 1),
                image_calls=_int(data.get("image_calls"), 0), gpt4=data.get("gpt4") == "on", expires_at=when,
                note=data.get("note", ""))
        except RelayError as exc:
            return await codes_page(ctx, error=exc.message_for(ctx.lang), status=400)
        return await codes_page(ctx, made=codes)

    @admin
    async def code_disable(ctx: Ctx) -> Response:
        try:
            await redeem.disable_code(ctx.state.engine, code_id=ctx.request.path_params["code_id"])
        except RelayError:
            raise Refused(404, "no_such_code") from None
        return console.redirect(ctx, "/admin/codes")

    @admin
    async def code_csv(ctx: Ctx) -> Response:
        """Every code (masked: only hashes are stored) with its state, streamed page by page."""
        engine = ctx.state.engine

        async def rows() -> AsyncIterator[str]:
            buf = io.StringIO()
            out = csv.writer(buf)
            out.writerow(CSV_COLUMNS)
            offset = 0
            while True:
                page = await redeem.list_codes(engine, limit=1000, offset=offset)
                for r in page:
                    out.writerow([r["masked"], r["batch"], r["calls"], r["image_calls"], int(bool(r["gpt4"])),
                                  r["expires_at"] or "", r["note"], redeem.state_of(r), r["created_at"],
                                  r["used_at"] or "", r["used_by_email"] or ""])
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
                if len(page) < 1000:
                    return
                offset += len(page)

        response = StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                                     headers={"content-disposition": 'attachment; filename="codes.csv"'})
        return console.finish(ctx, response)

    @admin
    async def model_weight(ctx: Ctx) -> Response:
        data = await form(ctx.request)
        try:
            await weights.set_weight(ctx.state.engine, model=data.get("model", ""), weight=_int(data.get("weight"), 1))
        except RelayError:
            raise Refused(400, "bad_weight") from None
        await ctx.state.reload_channels()  # reloads the weights too
        return console.redirect(ctx, "/admin/models")

    async def usage_filters(ctx: Ctx) -> tuple[usage_stats.Filters, bool]:
        """The filters of the admin usage search; (filters, the email matched no account)."""
        email = ctx.request.query_params.get("email", "").strip()
        account_id = None
        if email:
            try:
                account_id = (await accounts.get_account(ctx.state.engine, email=email))["id"]
            except accounts.AccountError:
                account_id = -1  # matches nothing
        return filters_of(ctx, account_id=account_id), account_id == -1

    @admin
    async def usage_search(ctx: Ctx) -> Response:
        await ctx.state.recorder.flush()
        filters, unknown = await usage_filters(ctx)
        rows, before, more = await calls_page(ctx, account_id=None, filters=filters)
        query = query_of(ctx)
        since = (datetime.now(UTC) - timedelta(hours=23)).strftime("%Y-%m-%d %H")
        hours = await usage_stats.hourly_totals(ctx.state.engine, since_hour=since)  # from the hourly totals
        return console.render(ctx, "admin_usage.html", rows=rows, page=before, more=more, q=query,
                              pager_query=urlencode(query), unknown_email=unknown, hours=hours)

    @admin
    async def usage_csv(ctx: Ctx) -> Response:
        filters, _ = await usage_filters(ctx)
        return console.finish(ctx, csv_response(ctx, filters, "usage.csv"))

    return [
        Route("/admin/usage", usage_search, methods=["GET"]),
        Route("/admin/usage.csv", usage_csv, methods=["GET"]),
        Route("/admin/codes", code_list, methods=["GET"]),
        Route("/admin/codes", code_batch, methods=["POST"]),
        Route("/admin/codes.csv", code_csv, methods=["GET"]),
        Route("/admin/codes/{code_id:int}/disable", code_disable, methods=["POST"]),
        Route("/admin/models/weight", model_weight, methods=["POST"]),
    ]
