"""The web console: server-rendered pages (Jinja2) with light JavaScript.

``console_routes(settings)`` returns every console route, mounted by
``lightrelay.http.app.create_app``: one route that imports the console's modules (Jinja2 and the
pages) and builds their routes on the first request that may be the console's, so a relay nobody
opens the console of never loads them. See docs/CONSOLE.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute, Match, Mount, NoMatchFound
from starlette.types import Receive, Scope, Send

from lightrelay.services.ratelimit import Window
from lightrelay.settings import Settings

STATIC = Path(__file__).parent / "static"
NOT_CONSOLE = ("/v1/",)  # paths no console route has: a call there never loads the console
_MATCHED = "lightrelay.console_route"  # the scope key that hands the matched route to handle()


def console_limits(settings: Settings) -> dict[str, Window]:
    """The console's rate limits (the app binds them to Redis when it has one)."""
    return {"login": Window.from_spec("login", settings.rate_login),
            "register": Window.from_spec("register", settings.rate_register),
            "mail": Window.from_spec("mail", settings.rate_mail)}


def console_routes(settings: Settings, limits: dict[str, Window]) -> list[BaseRoute]:
    return [LazyRoutes(lambda: build_console_routes(settings, limits), skip=NOT_CONSOLE)]


def build_console_routes(settings: Settings, limits: dict[str, Window]) -> list[BaseRoute]:
    from starlette.staticfiles import StaticFiles

    from lightrelay.web import admin, admin_business, auth_pages, me, playground, usage_pages
    from lightrelay.web.console import Console

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


class LazyRoutes(BaseRoute):
    """A run of routes built by ``build()`` on first use, standing in the router's list where they
    would: the first full match among them wins, else the first partial one (as the router itself
    does), so URLs, methods, 405s and slash redirects are the same as with the routes listed inline.
    Paths starting with one of ``skip`` never build them (none of the routes may have such a path)."""

    def __init__(self, build: Callable[[], list[BaseRoute]], *, skip: tuple[str, ...] = ()) -> None:
        self._build = build
        self._skip = skip
        self._routes: list[BaseRoute] | None = None

    @property
    def routes(self) -> list[BaseRoute]:
        if self._routes is None:
            routes = self._build()
            for route in routes:
                path = getattr(route, "path", "")
                assert not (path + "/").startswith(self._skip), f"{path} is under a skipped prefix"
            self._routes = routes
        return self._routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self._routes is None and scope.get("path", "").startswith(self._skip):
            return Match.NONE, {}
        partial: tuple[Match, Scope] = (Match.NONE, {})
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, {**child, _MATCHED: route}
            if match is Match.PARTIAL and partial[0] is Match.NONE:
                partial = (match, {**child, _MATCHED: route})
        return partial

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.pop(_MATCHED)
        scope["route"] = route
        await route.handle(scope, receive, send)


__all__ = ["console_limits", "console_routes"]
