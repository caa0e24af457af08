"""Admin pages (admin accounts only, checked on the server for every route and action):
dashboard, accounts, channels, models."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from lightrelay.channel_test import test_channel
from lightrelay.errors import RelayError
from lightrelay.http.render import JSON
from lightrelay.services import accounts, channels, usage
from lightrelay.web.console import Console, Ctx, Refused, form, path_id
from lightrelay.web.usage_pages import calls_page, chart_data


def parse_limit(raw: str) -> int | None:
    """``""``/``unlimited`` → None (no limit); otherwise a whole number ≥ 0."""
    raw = raw.strip().lower()
    if raw in ("", "unlimited", "无限", "none"):
        return None
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def form_keys(data: dict[str, str]) -> list[str] | None:
    """The API keys typed in the form (several: one a line or comma-separated); None keeps the stored ones."""
    return channels.read_key_file(data.get("api_key", "").replace(",", "\n")) or None


def channel_form(data: dict[str, str]) -> dict[str, Any]:
    """The fields of the channel form, typed (ChannelError on a bad value)."""
    try:
        priority = int(data.get("priority") or 0)
        weight = int(data.get("weight") or 1)
        timeout = float(data["timeout"]) if data.get("timeout", "").strip() else None
    except ValueError:
        raise channels.ChannelError("优先级、权重、超时必须是数字", "priority, weight and timeout must be numbers") from None
    return {"type": data.get("type", "openai"), "base_url": data.get("base_url", "").strip(),
            "models": channels.parse_models(data.get("models", "")), "priority": priority, "weight": weight,
            "timeout": timeout, "api_version": data.get("api_version", "").strip() or None}


def routes(console: Console) -> list[BaseRoute]:
    admin = console.page(login=True, admin=True)

    async def find_channel(ctx: Ctx) -> dict[str, Any]:
        channel_id = ctx.request.path_params["channel_id"]
        for row in await channels.load_channels(ctx.state.engine):
            if row["id"] == channel_id:
                return row
        raise Refused(404, "no_such_channel")

    @admin
    async def dashboard(ctx: Ctx) -> Response:
        state = ctx.state
        await state.recorder.flush()
        days = await usage.daily_totals(state.engine, days=30)
        today = next((d for d in days if d["day"] == state.clock.today()), None)
        rows, number, more = await calls_page(ctx, account_id=None)
        return console.render(ctx, "admin_dashboard.html", chart=chart_data(days), today_totals=today,
                              accounts_count=await accounts.count_accounts(state.engine), rows=rows, page=number,
                              more=more, models=state.router.models(), states=state.router.states())

    @admin
    async def account_list(ctx: Ctx) -> Response:
        q = ctx.request.query_params.get("q", "").strip()
        rows = await accounts.list_accounts(ctx.state.engine, search=q, limit=200)
        for row in rows:
            row["used"] = await ctx.state.relay.quota.used_today(row["id"])
        return console.render(ctx, "admin_accounts.html", rows=rows, q=q, error=None)

    @admin
    async def account_update(ctx: Ctx) -> Response:
        data = await form(ctx.request)
        account = await accounts.get_account_by_id(ctx.state.engine,
                                                   account_id=path_id(ctx, "account_id", "no_such_account"))
        if account is None:
            raise Refused(404, "no_such_account")
        try:
            limit = parse_limit(data.get("daily_limit", ""))
        except ValueError:
            raise Refused(400, "bad_limit") from None
        disabled = data.get("disabled") == "on"
        if account["id"] == (ctx.account or {})["id"] and disabled:
            raise Refused(400, "not_yourself")
        await accounts.update_account(ctx.state.engine, email=account["email"], daily_limit=limit,
                                      gpt4=data.get("gpt4") == "on", disabled=disabled)
        ctx.state.relay.auth.invalidate()
        return console.redirect(ctx, "/admin/accounts?q=" + data.get("q", ""))

    async def channel_page(ctx: Ctx, *, error: str | None = None, edit: dict | None = None,
                           status: int = 200) -> Response:
        state = ctx.state
        rows = [channels.public_view(r, state.keybox) for r in await channels.load_channels(state.engine)]
        return console.render(ctx, "admin_channels.html", status=status, rows=rows, states=state.router.states(),
                              why=state.router.why_out(),
                              error=error, edit=edit, local=state.local.status() if state.local else None)

    @admin
    async def channel_list(ctx: Ctx) -> Response:
        return await channel_page(ctx)

    @admin
    async def channel_add(ctx: Ctx) -> Response:
        data = await form(ctx.request)
        try:
            await channels.add_channel(ctx.state.engine, ctx.state.keybox, name=data.get("name", ""),
                                       api_keys=form_keys(data), **channel_form(data))
        except RelayError as exc:
            return await channel_page(ctx, error=exc.message_for(ctx.lang), status=400)
        await ctx.state.reload_channels()
        return console.redirect(ctx, "/admin/channels")

    @admin
    async def channel_edit(ctx: Ctx) -> Response:
        row = await find_channel(ctx)
        if ctx.request.method == "GET":
            return await channel_page(ctx, edit=channels.public_view(row, ctx.state.keybox))
        data = await form(ctx.request)
        try:
            # an empty API key field keeps the stored key (it is never sent back to the browser)
            await channels.update_channel(ctx.state.engine, ctx.state.keybox, name=row["name"],
                                          api_keys=form_keys(data), **channel_form(data))
        except RelayError as exc:
            return await channel_page(ctx, error=exc.message_for(ctx.lang), status=400,
                                      edit=channels.public_view(row, ctx.state.keybox))
        await ctx.state.reload_channels()
        return console.redirect(ctx, "/admin/channels")

    @admin
    async def channel_toggle(ctx: Ctx) -> Response:
        row = await find_channel(ctx)
        await channels.update_channel(ctx.state.engine, ctx.state.keybox, name=row["name"], enabled=not row["enabled"])
        await ctx.state.reload_channels()
        return console.redirect(ctx, "/admin/channels")

    @admin
    async def channel_enable_key(ctx: Ctx) -> Response:
        row = await find_channel(ctx)
        await channels.enable_key(ctx.state.engine, ctx.state.keybox, name=row["name"],
                                  which=str(ctx.request.path_params["n"]))
        await ctx.state.reload_channels()
        return console.redirect(ctx, "/admin/channels")

    @console.page(login=True, admin=True, as_json=True)
    async def channel_test(ctx: Ctx) -> Response:
        row = await find_channel(ctx)
        try:
            ms, reply = await test_channel(ctx.state.settings, ctx.state.engine, name=row["name"])
        except RelayError as exc:
            return console.finish(ctx, JSON({"ok": False, "error": exc.message_for(ctx.lang)}))
        return console.finish(ctx, JSON({"ok": True, "ms": round(ms, 1), "reply": reply[:200]}))

    @admin
    async def model_list(ctx: Ctx) -> Response:
        state = ctx.state
        serving: dict[str, list[dict[str, Any]]] = {}
        for row in await channels.load_channels(state.engine):
            for public, own in row["models"].items():
                serving.setdefault(public, []).append({"channel": row["name"], "own": own, "enabled": row["enabled"],
                                                       "priority": row["priority"]})
        live = state.router.models()
        for name in live:
            serving.setdefault(name, [])
        return console.render(ctx, "admin_models.html", serving=dict(sorted(serving.items())), live=set(live),
                              gpt4_prefix=state.settings.gpt4_prefix, weights=state.relay.weights)

    return [
        Route("/admin", dashboard, methods=["GET"]),
        Route("/admin/accounts", account_list, methods=["GET"]),
        Route("/admin/accounts/{account_id:int}", account_update, methods=["POST"]),
        Route("/admin/channels", channel_list, methods=["GET"]),
        Route("/admin/channels", channel_add, methods=["POST"]),
        Route("/admin/channels/{channel_id:int}/edit", channel_edit, methods=["GET", "POST"]),
        Route("/admin/channels/{channel_id:int}/toggle", channel_toggle, methods=["POST"]),
        Route("/admin/channels/{channel_id:int}/test", channel_test, methods=["POST"]),
        Route("/admin/channels/{channel_id:int}/keys/{n:int}/enable", channel_enable_key, methods=["POST"]),
        Route("/admin/models", model_list, methods=["GET"]),
    ]
