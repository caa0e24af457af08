"""Admin JSON API, Bearer token of an admin account: ``GET /api/admin/channels/state``.

The breaker state of each channel lives in the memory of the relay process that
routes calls, so the CLI (another process) cannot read it; this endpoint shows
it, with each channel's settings (API key masked, never in full).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lightrelay.errors import Forbidden, RelayError
from lightrelay.http.guard import guard_of
from lightrelay.http.light import bearer
from lightrelay.http.render import JSON, lang_of, openai_error
from lightrelay.services.channels import load_channels, public_view

SHOWN = ("name", "type", "base_url", "api_key", "priority", "weight", "timeout")


async def channel_states(request: Request) -> Response:
    state = request.app.state.lr
    try:
        principal = await guard_of(request).principal(request, state.relay, bearer(request))
        if not principal.is_admin:
            raise Forbidden("需要管理员权限", "admin access needed", code="admin_only")
    except RelayError as exc:
        return openai_error(exc, lang_of(request))
    live = state.router.snapshot()
    data: list[dict[str, Any]] = []
    for row in await load_channels(state.engine):
        view = public_view(row, state.keybox)
        item = {k: view.get(k) for k in SHOWN}
        item.update(live.get(row["name"], {"state": "closed", "failures": 0, "retry_in": 0.0, "probing": False}))
        item["enabled"] = bool(row["enabled"])
        item["models"] = row["models"]
        data.append(item)
    for name, view in live.items():  # the built-in local channel is not in the database
        if not any(d["name"] == name for d in data):
            data.append({"name": name, "type": "local", "base_url": "", "api_key": "", "priority": 0,
                         "weight": 1, "timeout": None, **view, "models": {m: m for m in view["models"]}})
    return JSON({"object": "list", "data": data})
