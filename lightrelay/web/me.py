"""我的 → API: the account's tokens, today's count, and ready-to-paste samples."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from lightrelay.errors import NotFound
from lightrelay.http.render import JSON
from lightrelay.services import accounts
from lightrelay.web import samples
from lightrelay.web.console import Console, Ctx, Refused, form

PLACEHOLDER = "sk-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"


async def today(ctx: Ctx) -> dict:
    """Today's count, limit and reset time for the logged-in account."""
    state, account = ctx.state, ctx.account or {}
    used = await state.relay.quota.used_today(account["id"])
    limit = account["daily_limit"]
    reset = state.clock.next_midnight()
    return {"used": used, "limit": limit, "left": None if limit is None else max(0, limit - used),
            "reset": reset.strftime("%Y-%m-%d %H:%M"), "tz": state.settings.timezone, "day": state.clock.today()}


async def render_api(console: Console, ctx: Ctx, *, new_token: str | None = None, welcome: bool = False,
                     status: int = 200) -> Response:
    account = ctx.account or {}
    tokens = await accounts.list_tokens(ctx.state.engine, account_id=account["id"])
    base = str(ctx.request.base_url).rstrip("/")
    models = ctx.state.router.models()
    model = ctx.state.settings.default_model
    if model not in models and models:
        model = models[0]
    return console.render(ctx, "me_api.html", status=status, tokens=tokens, new_token=new_token, welcome=welcome,
                          today=await today(ctx), base=base, models=models,
                          samples=samples.build(base=base, token=new_token or PLACEHOLDER, model=model))


def routes(console: Console) -> list[BaseRoute]:
    page = console.page

    @page(login=True)
    async def api_page(ctx: Ctx) -> Response:
        return await render_api(console, ctx)

    @page(login=True)
    async def create_token(ctx: Ctx) -> Response:
        name = (await form(ctx.request)).get("name", "").strip()[:100]
        account = ctx.account or {}
        live = [t for t in await accounts.list_tokens(ctx.state.engine, account_id=account["id"])
                if t["revoked_at"] is None]
        if len(live) >= 50:
            raise Refused(400, "too_many_tokens")
        token = await accounts.add_token(ctx.state.engine, account_id=account["id"], name=name)
        return await render_api(console, ctx, new_token=token)

    @page(login=True)
    async def revoke(ctx: Ctx) -> Response:
        try:
            token_id = int(ctx.request.path_params["token_id"])
            await accounts.revoke_token(ctx.state.engine, token_id=token_id, account_id=(ctx.account or {})["id"])
        except (ValueError, NotFound):
            raise Refused(404, "no_such_token") from None
        ctx.state.relay.auth.invalidate()
        return console.redirect(ctx, "/me/api")

    @page(login=True, as_json=True)
    async def today_json(ctx: Ctx) -> Response:
        return console.finish(ctx, JSON(await today(ctx)))

    return [
        Route("/me", to_api, methods=["GET"]),
        Route("/me/api", api_page, methods=["GET"]),
        Route("/me/api/tokens", create_token, methods=["POST"]),
        Route("/me/api/tokens/{token_id}/revoke", revoke, methods=["POST"]),
        Route("/console/api/today", today_json, methods=["GET"]),
    ]



async def to_api(request: Request) -> Response:
    return RedirectResponse("/me/api", status_code=303)
