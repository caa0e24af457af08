"""The web console: server-rendered pages (Jinja2) with light JavaScript.

``console_routes(settings)`` returns every console route, mounted by
``lightrelay.http.app.create_app``. See docs/CONSOLE.md.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from lightrelay.services.ratelimit import Window
from lightrelay.settings import Settings
from lightrelay.web import admin, admin_business, auth_pages, me, playground, usage_pages
from lightrelay.web.console import Console

STATIC = Path(__file__).parent / "static"


def console_limits(settings: Settings) -> dict[str, Window]:
    """The console's rate limits (the app binds them to Redis when it has one)."""
    return {"login": Window.from_spec("login", settings.rate_login),
            "register": Window.from_spec("register", settings.rate_register),
            "mail": Window.from_spec("mail", settings.rate_mail)}


def console_routes(settings: Settings, limits: dict[str, Window]) -> list[BaseRoute]:
    console = Console(settings, limits)
    return [
        *auth_pages.routes(console),
        *me.routes(console),
        *playground.routes(console),
        *usage_pages.routes(console),
        *admin.routes(console),
        *admin_business.routes(console),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


__all__ = ["console_limits", "console_routes"]
