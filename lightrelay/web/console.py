"""What every console page shares: the request context (who, which language, the
CSRF token), rendering with security headers, and the guards around handlers
(login / admin required, CSRF and Origin checked on every state-changing request,
rate limits turned into 429 pages).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import jinja2
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from lightrelay.http.render import JSON
from lightrelay.security import HasherBusy
from lightrelay.services import accounts
from lightrelay.services.ratelimit import Window
from lightrelay.settings import Settings
from lightrelay.web import i18n
from lightrelay.web.codes import Codes
from lightrelay.web.mailer import Mailer
from lightrelay.web.sessions import PRE_COOKIE, SESSION_COOKIE, Signer, new_id, session_account

log = logging.getLogger("lightrelay.console")
TEMPLATES = Path(__file__).parent / "templates"
LANG_COOKIE = "lr_lang"
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class Refused(Exception):
    """A console request refused with a status and a translated message."""

    def __init__(self, status: int, key: str, **fmt: Any) -> None:
        super().__init__(key)
        self.status, self.key, self.fmt = status, key, fmt


@dataclass
class Ctx:
    request: Request
    lang: str
    account: dict[str, Any] | None
    session_id: str | None
    pre_id: str | None
    new_pre: bool = False
    cookies: list[tuple[str, str, int | None]] = field(default_factory=list)  # (name, value, max_age) to set

    @property
    def state(self) -> Any:
        return self.request.app.state.lr

    @property
    def binding(self) -> str | None:
        return self.session_id or self.pre_id

    def t(self, key: str, /, **fmt: Any) -> str:  # positional-only: a format field may be named "key"
        return i18n.t(self.lang, key, **fmt)


class Console:
    """Built once per app by ``console_routes(settings)``; handlers get it by closure."""

    def __init__(self, settings: Settings, limits: dict[str, Window]) -> None:
        self.settings = settings
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        self.limits = limits  # "login", "register", "mail": made by console_limits(), counted in Redis if any
        self.mailer = Mailer(smtp_url=settings.smtp_url, sender=settings.mail_from, outbox=settings.outbox_dir)

    @cached_property
    def signer(self) -> Signer:
        return Signer(self.settings.secret())

    def codes(self, ctx: Ctx) -> Codes:
        s = self.settings
        return Codes(ctx.state.engine, secret=s.secret(), ttl=s.code_ttl_seconds, max_tries=s.code_max_tries,
                     cooldown=s.code_resend_seconds)

    # -- context -------------------------------------------------------------
    async def context(self, request: Request) -> Ctx:
        lang = request.cookies.get(LANG_COOKIE)
        if lang not in i18n.LANGS:
            lang = "en" if request.headers.get("accept-language", "").lower().startswith("en") else "zh"
        session_id = self.signer.unsign(request.cookies.get(SESSION_COOKIE))
        account = None
        if session_id:
            account_id = await session_account(request.app.state.lr.engine, session_id=session_id)
            if account_id is not None:
                account = await accounts.get_account_by_id(request.app.state.lr.engine, account_id=account_id)
            if account is None or account["disabled"] or not account["active"]:
                account, session_id = None, None
        pre_id = self.signer.unsign(request.cookies.get(PRE_COOKIE))
        ctx = Ctx(request=request, lang=lang, account=account, session_id=session_id, pre_id=pre_id)
        if pre_id is None:
            ctx.pre_id, ctx.new_pre = new_id(), True
        return ctx

    async def limit(self, name: str, key: str) -> None:
        wait = await self.limits[name].hit(key)
        if wait is not None:
            raise Refused(429, "rate_limited", seconds=wait)

    # -- responses -----------------------------------------------------------
    def finish(self, ctx: Ctx, response: Response) -> Response:
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        secure = self.settings.console_secure_cookies
        if ctx.new_pre and ctx.pre_id:
            response.set_cookie(PRE_COOKIE, self.signer.sign(ctx.pre_id), httponly=True, samesite="lax",
                                secure=secure, path="/")
        for name, value, max_age in ctx.cookies:
            if value:
                response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax", secure=secure,
                                    path="/")
            else:
                response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=secure)
        return response

    def render(self, ctx: Ctx, template: str, *, status: int = 200, **values: Any) -> Response:
        html = self.env.get_template(template).render(
            t=ctx.t, lang=ctx.lang, me=ctx.account, csrf=self.signer.csrf(ctx.binding or ""),
            path=ctx.request.url.path, full_path=_full_path(ctx.request), **values)
        return self.finish(ctx, HTMLResponse(html, status_code=status))

    def redirect(self, ctx: Ctx, url: str) -> Response:
        return self.finish(ctx, RedirectResponse(url, status_code=303))

    def refused(self, ctx: Ctx, exc: Refused, *, as_json: bool) -> Response:
        message = ctx.t(exc.key, **exc.fmt)
        headers = {"retry-after": str(exc.fmt["seconds"])} if exc.status == 429 else {}
        if as_json:
            return self.finish(ctx, JSON({"error": {"message": message, "code": exc.key}}, status_code=exc.status,
                                         headers=headers))
        response = self.render(ctx, "error.html", status=exc.status, message=message)
        response.headers.update(headers)
        return response

    # -- guards --------------------------------------------------------------
    def page(self, *, login: bool = False, admin: bool = False, as_json: bool = False,
             ) -> Callable[[Callable[..., Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]:
        """Wrap a handler ``fn(ctx) -> Response`` with the checks every console route needs."""

        def wrap(fn: Callable[[Ctx], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
            @functools.wraps(fn)
            async def handler(request: Request) -> Response:
                ctx = await self.context(request)
                unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
                try:
                    if (login or admin) and ctx.account is None:
                        if unsafe or as_json:
                            raise Refused(401, "login_required")
                        return self.redirect(ctx, "/login?next=" + quote(_full_path(request), safe="/"))
                    if admin and not ctx.account["is_admin"]:  # type: ignore[index]
                        raise Refused(403, "admin_only")
                    if unsafe:
                        await self.check_csrf(ctx)
                    return await fn(ctx)
                except Refused as exc:
                    return self.refused(ctx, exc, as_json=as_json)
                except HasherBusy:  # a flood of password attempts: refuse at once instead of queueing more
                    return self.refused(ctx, Refused(429, "rate_limited", seconds=1), as_json=as_json)

            return handler

        return wrap

    async def check_csrf(self, ctx: Ctx) -> None:
        request = ctx.request
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise Refused(403, "csrf_failed")
        token = request.headers.get("x-csrf-token")
        if token is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            token = (await form(request)).get("csrf")
        if ctx.new_pre and not ctx.session_id or not self.signer.csrf_ok(ctx.binding, token):
            raise Refused(403, "csrf_failed")


def path_id(ctx: Ctx, name: str, missing: str) -> int:
    """A numeric id from the path; 404 ``missing`` if it cannot be a row's id (past 64 bits the
    database driver would raise OverflowError: a 500)."""
    try:
        number = int(ctx.request.path_params[name])
    except ValueError:
        raise Refused(404, missing) from None
    if not 0 < number < 2**63:
        raise Refused(404, missing)
    return number


async def form(request: Request) -> dict[str, str]:
    """A small urlencoded form (cached on the request); 413 past 64 KiB."""
    if "lr_form" in request.scope:
        return request.scope["lr_form"]
    try:
        body = await request.body()
    except ClientDisconnect:  # an ordinary event: no traceback
        log.info("the client hung up while sending a form (%s)", request.url.path)
        raise Refused(400, "bad_request") from None
    if len(body) > MAX_FORM_BYTES:
        raise Refused(413, "too_large")
    data = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    request.scope["lr_form"] = data
    return data


def _full_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def safe_next(value: str | None, default: str = "/me/api") -> str:
    """A local path to go to after login (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value
