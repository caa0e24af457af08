"""Sign-up with an emailed code, login / logout, password change and reset."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from lightrelay import security
from lightrelay.http.guard import client_address
from lightrelay.services import accounts
from lightrelay.web.codes import REGISTER, RESET, CodeError
from lightrelay.web.console import Console, Ctx, Refused, form, safe_next
from lightrelay.web.mailer import Delivery
from lightrelay.web.me import show_once
from lightrelay.web.sessions import SESSION_COOKIE, create_session, end_other_sessions, end_session

MIN_PASSWORD = 8
FLASHES = {"flash_registered", "flash_reset_done", "flash_logged_out", "flash_code_sent"}


def client_ip(ctx: Ctx) -> str:
    """The caller's address, through the proxies LIGHTRELAY_TRUSTED_PROXIES names (as the API doors see it)."""
    return client_address(ctx.request, ctx.state.settings.trusted_networks)


def flash(ctx: Ctx) -> str | None:
    key = ctx.request.query_params.get("msg")
    return ctx.t(key) if key in FLASHES else None


async def send_code(console: Console, ctx: Ctx, *, email: str, purpose: str) -> Delivery:
    """Mail a fresh code (429 while the resend cooldown or the mail rate limit holds)."""
    codes = console.codes(ctx)
    wait = await codes.wait_before_resend(email=email, purpose=purpose)
    if wait:
        raise Refused(429, "resend_wait", seconds=wait)
    await console.limit("mail", email)
    code = await codes.issue(email=email, purpose=purpose)
    minutes = console.settings.code_ttl_seconds // 60
    subject = ctx.t(f"mail_subject_{purpose}", code=code)
    body = ctx.t(f"mail_body_{purpose}", code=code, minutes=minutes)
    return await console.mailer.send(to=email, subject=subject, body=body, log_line=f"{purpose} code {code}")


def routes(console: Console) -> list[BaseRoute]:
    page = console.page
    settings = console.settings

    def where_codes_go(ctx: Ctx, email: str) -> str:
        if console.mailer.via == "smtp":
            return ctx.t("code_sent_smtp", email=email)
        return ctx.t("code_sent_outbox", email=email)  # the outbox's path only in the server's log

    async def start_session(ctx: Ctx, account: dict) -> None:
        ctx.session_id = await create_session(ctx.state.engine, account_id=account["id"],
                                              days=settings.console_session_days)
        ctx.account = account
        ctx.cookies.append((SESSION_COOKIE, console.signer.sign(ctx.session_id),
                            settings.console_session_days * 86400))

    @page()
    async def home(ctx: Ctx) -> Response:
        return console.redirect(ctx, "/me/api" if ctx.account else "/login")

    @page()
    async def login(ctx: Ctx) -> Response:
        next_url = safe_next(ctx.request.query_params.get("next"))
        if ctx.request.method == "GET":
            return console.render(ctx, "login.html", next=next_url, email="", error=None, flash=flash(ctx))
        data = await form(ctx.request)
        email, password = data.get("email", "").strip().lower(), data.get("password", "")
        next_url = safe_next(data.get("next"))
        # Counted before the password is checked (atomic under a burst; a refused attempt costs no
        # argon2), given back when it was right: only failures fill the windows. Per address, and per
        # address *and* e-mail: guesses from elsewhere cannot lock the owner out of their account.
        ip = client_ip(ctx)
        keys = ["ip:" + ip, f"email:{email}|ip:{ip}"]
        for key in keys:
            await console.limit("login", key)
        try:
            account = await accounts.get_account(ctx.state.engine, email=email)
        except accounts.AccountError:
            account = None
        if account is None or not await security.check_password(account["password_hash"], password):
            return console.render(ctx, "login.html", status=400, next=next_url, email=email,
                                  error=ctx.t("bad_login"), flash=None)
        for key in keys:
            await console.limits["login"].give_back(key)
        if account["disabled"]:
            return console.render(ctx, "login.html", status=403, next=next_url, email=email,
                                  error=ctx.t("account_disabled"), flash=None)
        if not account["active"]:
            return console.redirect(ctx, f"/verify?email={quote(email)}")
        await start_session(ctx, account)
        return console.redirect(ctx, next_url)

    @page()
    async def logout(ctx: Ctx) -> Response:
        if ctx.session_id:
            await end_session(ctx.state.engine, session_id=ctx.session_id)
        ctx.cookies.append((SESSION_COOKIE, "", None))
        return console.redirect(ctx, "/login?msg=flash_logged_out")

    @page()
    async def register(ctx: Ctx) -> Response:
        if not settings.console_registration:
            raise Refused(403, "registration_closed")
        if ctx.request.method == "GET":
            return console.render(ctx, "register.html", email="", error=None,
                                  invite=ctx.request.query_params.get("invite", "")[:32])
        data = await form(ctx.request)
        email, password, invite = data.get("email", ""), data.get("password", ""), data.get("invite", "")[:32]
        try:
            email = accounts.normalize_email(email)
        except accounts.AccountError:
            return console.render(ctx, "register.html", status=400, email=email, error=ctx.t("bad_email"),
                                  invite=invite)
        if len(password) < MIN_PASSWORD:
            return console.render(ctx, "register.html", status=400, email=email, invite=invite,
                                  error=ctx.t("short_password", n=MIN_PASSWORD))
        await console.limit("register", client_ip(ctx))
        engine = ctx.state.engine
        try:
            existing = await accounts.get_account(engine, email=email)
        except accounts.AccountError:
            existing = None
        if existing is not None and existing["active"]:
            return console.render(ctx, "register.html", status=400, email=email, error=ctx.t("already_registered"),
                                  invite=invite)
        wait = await console.codes(ctx).wait_before_resend(email=email, purpose=REGISTER)
        if wait:
            raise Refused(429, "resend_wait", seconds=wait)
        if existing is None:
            await accounts.create_account(engine, email=email, password=password,
                                          daily_limit=settings.default_daily_limit, active=False,
                                          invited_by=await accounts.inviter(engine, code=invite))
        else:  # signed up before without entering the code: start again with the new password
            await accounts.update_account(engine, email=email, password=password)
        await send_code(console, ctx, email=email, purpose=REGISTER)
        return console.redirect(ctx, f"/verify?email={quote(email)}&msg=flash_code_sent")

    @page()
    async def verify(ctx: Ctx) -> Response:
        q = ctx.request.query_params
        if ctx.request.method == "GET":
            email = q.get("email", "")
            return console.render(ctx, "verify.html", email=email, error=None, flash=flash(ctx),
                                  where=where_codes_go(ctx, email) if email else None)
        data = await form(ctx.request)
        email, code = data.get("email", "").strip().lower(), data.get("code", "").strip()
        engine = ctx.state.engine
        try:
            await console.codes(ctx).check(email=email, purpose=REGISTER, code=code)
            account = await accounts.get_account(engine, email=email)
        except (CodeError, accounts.AccountError) as exc:
            reason = exc.reason if isinstance(exc, CodeError) else "none"
            left = exc.tries_left if isinstance(exc, CodeError) else 0
            return console.render(ctx, "verify.html", status=400, email=email, flash=None,
                                  where=where_codes_go(ctx, email), error=ctx.t(f"code_{reason}", n=left))
        await accounts.activate_account(engine, account_id=account["id"], invite_reward=settings.invite_reward_calls)
        account["active"] = True
        token = await accounts.add_token(engine, account_id=account["id"], name="default")
        ctx.state.relay.auth.invalidate()
        await start_session(ctx, account)
        return show_once(console, ctx, token, welcome=True)

    @page()
    async def resend(ctx: Ctx) -> Response:
        data = await form(ctx.request)
        email, purpose = data.get("email", "").strip().lower(), data.get("purpose", REGISTER)
        if purpose not in (REGISTER, RESET):
            raise Refused(400, "bad_request")
        try:
            account = await accounts.get_account(ctx.state.engine, email=email)
        except accounts.AccountError:
            account = None
        # only mail an account that is waiting for this code; answer the same either way
        if account is not None and (account["active"] if purpose == RESET else not account["active"]):
            await send_code(console, ctx, email=email, purpose=purpose)
        target = "/verify" if purpose == REGISTER else "/reset/confirm"
        return console.redirect(ctx, f"{target}?email={quote(email)}&msg=flash_code_sent")

    @page()
    async def reset(ctx: Ctx) -> Response:
        if ctx.request.method == "GET":
            return console.render(ctx, "reset.html", email="", error=None)
        email = (await form(ctx.request)).get("email", "").strip().lower()
        try:
            account = await accounts.get_account(ctx.state.engine, email=email)
        except accounts.AccountError:
            account = None
        if account is not None and account["active"] and not account["disabled"]:
            await send_code(console, ctx, email=email, purpose=RESET)
        return console.redirect(ctx, f"/reset/confirm?email={quote(email)}&msg=flash_code_sent")

    @page()
    async def reset_confirm(ctx: Ctx) -> Response:
        if ctx.request.method == "GET":
            email = ctx.request.query_params.get("email", "")
            return console.render(ctx, "reset_confirm.html", email=email, error=None, flash=flash(ctx),
                                  where=where_codes_go(ctx, email) if email else None)
        data = await form(ctx.request)
        email, code, password = data.get("email", "").strip().lower(), data.get("code", ""), data.get("password", "")
        where = where_codes_go(ctx, email)
        if len(password) < MIN_PASSWORD:
            return console.render(ctx, "reset_confirm.html", status=400, email=email, flash=None, where=where,
                                  error=ctx.t("short_password", n=MIN_PASSWORD))
        try:
            await console.codes(ctx).check(email=email, purpose=RESET, code=code)
        except CodeError as exc:
            return console.render(ctx, "reset_confirm.html", status=400, email=email, flash=None, where=where,
                                  error=ctx.t(f"code_{exc.reason}", n=exc.tries_left))
        account = await accounts.update_account(ctx.state.engine, email=email, password=password)
        await end_other_sessions(ctx.state.engine, account_id=account["id"])
        return console.redirect(ctx, "/login?msg=flash_reset_done")

    @page(login=True)
    async def password(ctx: Ctx) -> Response:
        if ctx.request.method == "GET":
            return console.render(ctx, "password.html", error=None, done=False)
        data = await form(ctx.request)
        account = ctx.account or {}
        # the limit first: once it is reached not even the right password gets through (a stolen
        # session cannot go on guessing), and a refused attempt costs no argon2
        key = f"account:{account['id']}"
        await console.limit("login", key)
        if not await security.check_password(account.get("password_hash"), data.get("current", "")):
            return console.render(ctx, "password.html", status=400, error=ctx.t("bad_current"), done=False)
        await console.limits["login"].give_back(key)
        if len(data.get("password", "")) < MIN_PASSWORD:
            return console.render(ctx, "password.html", status=400, done=False,
                                  error=ctx.t("short_password", n=MIN_PASSWORD))
        await accounts.update_account(ctx.state.engine, email=account["email"], password=data["password"])
        await end_other_sessions(ctx.state.engine, account_id=account["id"], keep=ctx.session_id)
        return console.render(ctx, "password.html", error=None, done=True)

    @page()
    async def set_lang(ctx: Ctx) -> Response:
        lang = ctx.request.path_params["lang"]
        if lang in ("zh", "en"):
            ctx.cookies.append(("lr_lang", lang, 365 * 86400))
        return console.redirect(ctx, safe_next(ctx.request.query_params.get("next"), "/"))

    both = ["GET", "POST"]
    return [
        Route("/", home, methods=["GET"]),
        Route("/login", login, methods=both),
        Route("/logout", logout, methods=["POST"]),
        Route("/register", register, methods=both),
        Route("/verify", verify, methods=both),
        Route("/verify/resend", resend, methods=["POST"]),
        Route("/reset", reset, methods=both),
        Route("/reset/confirm", reset_confirm, methods=both),
        Route("/me/password", password, methods=both),
        Route("/lang/{lang}", set_lang, methods=["GET"]),
    ]
