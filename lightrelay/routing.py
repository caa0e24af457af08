"""Routing: which channels serve a model, in which order, and which are cooling down.

Channels are held in memory and reloaded from the database in the background
(every few seconds, and at once after a change made through this process), so
picking a channel costs no database read. Among enabled channels serving a
model the highest priority comes first, ties shuffled by weight; the rest follow
as failover.

Breaker: a channel is taken out on evidence, not on one error. Once a channel fails, its calls
are counted in one-second buckets over the last ``window`` seconds; when at least
``failures_to_cool`` of them failed and the failures are at least ``ratio`` of them, it is
skipped for ``cooldown`` seconds, then one call probes it (half-open): success closes the
breaker, failure opens it again. The last failure's message is kept as the reason it is out.
A channel whose API keys are all retired (``providers/keys.py``) is skipped too.
"""

from __future__ import annotations

import random
import time
from collections import deque
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
    failures: int = 0  # failures in the window
    open_until: float = 0.0
    probing: bool = False
    reason: str | None = None  # the last failure's message
    window: deque[list[int]] = field(default_factory=deque)  # [second, successes, failures], oldest first

    def note(self, now: float, *, failed: bool, span: float) -> tuple[int, int]:
        """Count one call; returns (failures, calls) within the last ``span`` seconds."""
        sec = int(now)
        w = self.window
        if w and w[-1][0] == sec:
            bucket = w[-1]
        else:
            bucket = [sec, 0, 0]
            w.append(bucket)
        bucket[2 if failed else 1] += 1
        horizon = now - span
        while w[0][0] + 1 <= horizon:  # the bucket ended before the window began (the newest never has)
            w.popleft()
        fails = sum(b[2] for b in w)
        self.failures = fails
        return fails, fails + sum(b[1] for b in w)

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
                 failures_to_cool: int, cooldown: float, window: float = 60.0, ratio: float = 0.5) -> None:
        self._make_provider = make_provider
        self._default_models = default_models
        self._local_auto = local_auto
        self._failures_to_cool = failures_to_cool
        self._cooldown = cooldown
        self._window = window
        self._ratio = ratio
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
                   r.get("first_byte_timeout"), r.get("idle_timeout"), r.get("api_version"),
                   tuple(k["key_enc"] for k in r.get("keys", ())))
            provider = self._providers.get(r["name"]) if self._signature.get(r["name"]) == sig else None
            if provider is None and r["enabled"]:
                provider = self._make_provider(r)
            ring = getattr(provider, "keys", None)
            if ring is not None and "keys" in r:  # retirements stored (or undone) by another process or the CLI
                ring.sync({k["position"]: k.get("retired_reason") for k in r["keys"]})
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
        usable = [c for c in serving if self._usable(c.name, now) and _keys_left(c.provider)]
        if not usable:
            waits = [self._breakers[c.name].open_until - now for c in serving
                     if c.name in self._breakers and self._breakers[c.name].open_until]
            raise no_channel(model, retry_after=max(1, int(min(waits)) + 1) if waits else 60)
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
        if b is None:  # no failure lately: nothing to count
            return
        if b.open_until != 0.0:  # the probe answered: closed, the evidence forgotten
            del self._breakers[name]
            return
        fails, _ = b.note(time.monotonic(), failed=False, span=self._window)
        if not fails:
            del self._breakers[name]

    def failed(self, name: str, reason: str | None = None) -> None:
        b = self._breakers.setdefault(name, Breaker())
        now = time.monotonic()
        fails, calls = b.note(now, failed=True, span=self._window)
        if reason:
            b.reason = reason[:300]
        if b.probing or (fails >= self._failures_to_cool and fails >= self._ratio * calls):
            b.open_until = now + self._cooldown
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

    def why_out(self) -> dict[str, dict[str, Any]]:
        """Per channel, why it is (or may soon be) out: the last failure's message and each retired key."""
        out: dict[str, dict[str, Any]] = {}
        for c in self._channels:
            b = self._breakers.get(c.name)
            ring = getattr(c.provider, "keys", None)
            retired = [{"n": k.position + 1, "reason": k.retired} for k in ring.keys if k.retired] if ring else []
            out[c.name] = {"reason": b.reason if b else None, "retired_keys": retired,
                           "keys_left": _keys_left(c.provider)}
        return out

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``states()`` plus, for admins, the seconds until an open breaker lets a probe through."""
        now = time.monotonic()
        out = self.states()
        for name, view in out.items():
            b = self._breakers.get(name)
            view["retry_in"] = round(max(0.0, b.open_until - now), 3) if b and view["state"] == "open" else 0.0
            view["probing"] = bool(b and b.probing)
        for name, why in self.why_out().items():
            out[name].update(why)
        return out

    def providers(self) -> list[Provider]:
        return list(self._providers.values())


def _keys_left(provider: Provider | None) -> bool:
    ring = getattr(provider, "keys", None)
    return ring is None or ring.usable
