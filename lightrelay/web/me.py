"""我的 → API: the account's tokens, today's count, and ready-to-paste samples."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from lightrelay.errors import NotFound, RelayError
from lightrelay.http.guard import public_base
from lightrelay.http.render import JSON
from lightrelay.services import accounts, redeem
from lightrelay.web import samples
from lightrelay.web.console import Console, Ctx, Refused, form, path_id
from lightrelay.web.sessions import ONCE_COOKIE

ONCE_SECONDS = 120
PLACEHOLDER = "sk-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"


async def today(ctx: Ctx) -> dict:
    """Today's count, limit and reset time for the logged-in account."""
    state, account = ctx.state, ctx.account or {}
    used = await state.relay.quota.used_today(account["id"])
    limit = account["daily_limit"]
    reset = state.clock.next_midnight()
    return {"used": used, "limit": limit, "left": None if limit is None else max(0, limit - used),
            "reset": reset.strftime("%Y-%m-%d %H:%M"), "tz": state.settings.timezone, "day": state.clock.today(),
            "extra": account.get("extra_calls") or 0}


def show_once(console: Console, ctx: Ctx, token: str, *, welcome: bool = False) -> Response:
    """Redirect to 我的 → API, which shows ``token`` in full this one time (post/redirect/get)."""
    ctx.cookies.append((ONCE_COOKIE, console.signer.seal(("w:" if welcome else "t:") + token), ONCE_SECONDS))
    return console.redirect(ctx, "/me/api")


async def render_api(console: Console, ctx: Ctx, *, notice: str | None = None, error: str | None = None,
                     status: int = 200) -> Response:
    account = ctx.account or {}
    new_token, welcome = None, False
    if ONCE_COOKIE in ctx.request.cookies:
        ctx.cookies.append((ONCE_COOKIE, "", None))
        once = console.signer.open(ctx.request.cookies[ONCE_COOKIE], max_age=ONCE_SECONDS) or ""
        if once[:2] in ("w:", "t:"):
            new_token, welcome = once[2:], once[:2] == "w:"
    tokens = await accounts.list_tokens(ctx.state.engine, account_id=account["id"])
    base = public_base(ctx.request, ctx.state.settings.trusted_networks)
    models = ctx.state.router.models()
    model = ctx.state.settings.default_model
    if model not in models and models:
        model = models[0]
    return console.render(ctx, "me_api.html", status=status, tokens=tokens, new_token=new_token, welcome=welcome,
                          notice=notice, error=error, invite_calls=ctx.state.settings.invite_reward_calls,
                          weights=ctx.state.relay.weights,
                          invite=await accounts.invite_code(ctx.state.engine, account_id=account["id"]),
                          today=await today(ctx), base=base, models=models,
                          samples=samples.build(base=base, token=new_token or PLACEHOLDER, model=model))


def routes(console: Console) -> list[BaseRoute]:
    page = console.page

    @page(login=True)
    async def api_page(ctx: Ctx) -> Response:
        return await render_api(console, ctx)

    @page(login=True)
    async def create_token(ctx: Ctx) -> Response:
        data = await form(ctx.request)
        name = data.get("name", "").strip()[:100]
        account = ctx.account or {}
        try:
            limits = accounts.TokenLimits.parse(models=data.get("models"), expires=data.get("expires"),
                                                ips=data.get("ips"), rpm=data.get("rpm"),
                                                daily_limit=data.get("daily_limit"), tz=ctx.state.settings.tz)
        except accounts.AccountError as exc:
            return await render_api(console, ctx, error=exc.message_for(ctx.lang), status=400)
        live = [t for t in await accounts.list_tokens(ctx.state.engine, account_id=account["id"])
                if t["revoked_at"] is None]
        if len(live) >= 50:
            raise Refused(400, "too_many_tokens")
        token = await accounts.add_token(ctx.state.engine, account_id=account["id"], name=name, limits=limits)
        return show_once(console, ctx, token)

    @page(login=True)
    async def redeem_code(ctx: Ctx) -> Response:
        """The 兑换码 box: the same redemption as ``POST /api/light/exchangeCode/appUse``."""
        code = (await form(ctx.request)).get("code", "")
        account_id = (ctx.account or {})["id"]
        by_account, by_address = ctx.request.app.state.redeem_limits
        for window, key in ((by_account, f"a{account_id}"), (by_address, ctx.request.app.state.token_guard
                                                                 .address(ctx.request))):
            wait = await window.hit(key)
            if wait is not None:
                raise Refused(429, "rate_limited", seconds=wait)
        try:
            await redeem.redeem(ctx.state.engine, account_id=account_id, code=code)
        except RelayError as exc:
            return await render_api(console, ctx, error=exc.message_for(ctx.lang), status=exc.status)
        ctx.state.relay.auth.invalidate()
        ctx.account = await accounts.get_account_by_id(ctx.state.engine, account_id=account_id)
        return await render_api(console, ctx, notice=ctx.t("redeemed", extra=(ctx.account or {})["extra_calls"]))

    @page(login=True)
    async def revoke(ctx: Ctx) -> Response:
        try:
            token_id = path_id(ctx, "token_id", "no_such_token")
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
        Route("/me/redeem", redeem_code, methods=["POST"]),
        Route("/me/api/tokens/{token_id}/revoke", revoke, methods=["POST"]),
        Route("/console/api/today", today_json, methods=["GET"]),
    ]



async def to_api(request: Request) -> Response:
    return RedirectResponse("/me/api", status_code=303)
