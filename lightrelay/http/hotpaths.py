"""The chat doors skip Starlette's router and middleware stack.

Those layers cost about a tenth of a call's CPU in the benchmark's profile. An
exact (method, path) match calls the door's endpoint directly; every other
request, and the lifespan, goes to the Starlette app as usual. The doors catch
their own errors and render them in their own shapes, so nothing is lost by
skipping the app's exception middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class HotPaths:
    def __init__(self, app: Starlette, endpoints: dict[tuple[str, str], Endpoint]) -> None:
        self.app = app
        self._endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._endpoints.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self.app
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @property
    def state(self) -> Any:
        return self.app.state
