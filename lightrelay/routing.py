"""Routing: which channels serve a model, in which order, and which are cooling down.

Channels are held in memory and reloaded from the database in the background
(every few seconds, and at once after a change made through this process), so
picking a channel costs no database read. Among enabled channels serving a
model the highest priority comes first, ties shuffled by weight; the rest follow
as failover. A channel that fails ``failures_to_cool`` times in a row is
skipped for ``cooldown`` seconds, then one call probes it (half-open): success
closes the breaker, failure opens it again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightrelay.errors import NotFound, Unavailable
from lightrelay.providers.base import Provider

BUILTIN_LOCAL = "builtin-local"


def no_channel(model: str, *, retry_after: int) -> Unavailable:
    return Unavailable(f"模型 {model} 暂无可用渠道，请稍后再试",
                       f"no channel for {model} is available right now; try again later", retry_after=retry_after)


@dataclass(slots=True)
class Route:
    channel: str
    provider: Provider
    upstream_model: str
    timeout: float | None = None


@dataclass(slots=True)
class Breaker:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False

    def state(self, now: float) -> str:
        if self.open_until == 0.0:
            return "closed"
        return "open" if now < self.open_until else "half-open"


@dataclass(slots=True)
class Channel:
    name: str
    type: str
    models: dict[str, str]
    priority: int
    weight: int
    enabled: bool
    timeout: float | None
    provider: Provider | None = field(default=None, repr=False)


class Router:
    def __init__(self, *, make_provider: Callable[[dict[str, Any]], Provider],
                 default_models: tuple[str, ...], local_auto: bool,
                 failures_to_cool: int, cooldown: float) -> None:
        self._make_provider = make_provider
        self._default_models = default_models
        self._local_auto = local_auto
        self._failures_to_cool = failures_to_cool
        self._cooldown = cooldown
        self._channels: list[Channel] = []
        self._signature: dict[str, tuple] = {}
        self._providers: dict[str, Provider] = {}
        self._breakers: dict[str, Breaker] = {}

    # -- loading -----------------------------------------------------------
    def load(self, rows: list[dict[str, Any]]) -> list[Provider]:
        """Replace the channel set; returns providers no longer used (for the caller to close)."""
        if self._local_auto and not any(r["enabled"] for r in rows):
            rows = [*rows, {"name": BUILTIN_LOCAL, "type": "local", "base_url": "", "api_key_enc": None,
                            "models": {m: m for m in self._default_models}, "priority": 0, "weight": 1,
                            "enabled": True, "timeout": None}]
        channels, providers = [], {}
        for r in rows:
            sig = (r["type"], r["base_url"], r["api_key_enc"], r["timeout"], r.get("connect_timeout"),
                   r.get("first_byte_timeout"), r.get("idle_timeout"))
            provider = self._providers.get(r["name"]) if self._signature.get(r["name"]) == sig else None
            if provider is None and r["enabled"]:
                provider = self._make_provider(r)
            if provider is not None:
                providers[r["name"]] = provider
            self._signature[r["name"]] = sig
            channels.append(Channel(name=r["name"], type=r["type"], models=dict(r["models"]),
                                    priority=r["priority"], weight=r["weight"], enabled=r["enabled"],
                                    timeout=r["timeout"], provider=provider))
        stale = [p for name, p in self._providers.items() if providers.get(name) is not p]
        self._channels, self._providers = channels, providers
        return stale

    # -- picking -----------------------------------------------------------
    def models(self) -> list[str]:
        names = {m for c in self._channels if c.enabled for m in c.models}
        return sorted(names)

    def routes(self, model: str) -> list[Route]:
        """Channels to try for ``model``, in order. NotFound / Unavailable when there are none."""
        serving = [c for c in self._channels if c.enabled and model in c.models and c.provider]
        if not serving:
            raise NotFound(f"未知模型: {model}", f"unknown model: {model}", param="model")
        now = time.monotonic()
        usable = [c for c in serving if self._usable(c.name, now)]
        if not usable:
            wait = min(self._breakers[c.name].open_until for c in serving) - now
            raise no_channel(model, retry_after=max(1, int(wait) + 1))
        ordered: list[Channel] = []
        for prio in sorted({c.priority for c in usable}, reverse=True):
            group = [c for c in usable if c.priority == prio]
            while group:
                pick = random.choices(group, weights=[c.weight for c in group])[0] if len(group) > 1 else group[0]
                ordered.append(pick)
                group.remove(pick)
        return [Route(c.name, c.provider, c.models[model], c.timeout) for c in ordered]  # type: ignore[arg-type]

    def _usable(self, name: str, now: float) -> bool:
        b = self._breakers.get(name)
        return b is None or b.open_until == 0.0 or (now >= b.open_until and not b.probing)

    def claim(self, name: str) -> bool:
        """Called just before a route is tried: False if it may not be tried now. A half-open
        channel is claimed by the one call that actually tries it (its probe), so a call that
        never gets to a route (an earlier one answered, or the quota refused) blocks nothing."""
        if not self._usable(name, time.monotonic()):
            return False
        b = self._breakers.get(name)
        if b is not None and b.open_until != 0.0:
            b.probing = True  # half-open: this call is the probe
        return True

    # -- outcomes ----------------------------------------------------------
    # Every claimed route ends in exactly one of these three.
    def succeeded(self, name: str) -> None:
        b = self._breakers.get(name)
        if b is not None:
            b.failures, b.open_until, b.probing = 0, 0.0, False

    def failed(self, name: str) -> None:
        b = self._breakers.setdefault(name, Breaker())
        b.failures += 1
        if b.probing or b.failures >= self._failures_to_cool:
            b.open_until = time.monotonic() + self._cooldown
        b.probing = False

    def released(self, name: str) -> None:
        """A call that neither succeeded nor failed through the channel's fault (e.g. the client left)."""
        b = self._breakers.get(name)
        if b is not None:
            b.probing = False

    def states(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        return {c.name: {"state": self._breakers.get(c.name, Breaker()).state(now),
                         "failures": self._breakers.get(c.name, Breaker()).failures,
                         "enabled": c.enabled, "models": sorted(c.models)} for c in self._channels}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``states()`` plus, for admins, the seconds until an open breaker lets a probe through."""
        now = time.monotonic()
        out = self.states()
        for name, view in out.items():
            b = self._breakers.get(name)
            view["retry_in"] = round(max(0.0, b.open_until - now), 3) if b and view["state"] == "open" else 0.0
            view["probing"] = bool(b and b.probing)
        return out

    def providers(self) -> list[Provider]:
        return list(self._providers.values())
