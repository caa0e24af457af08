"""Channels: the upstreams a model name routes to. API keys are sealed at rest."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.clock import utcnow
from lightrelay.db.models import channels
from lightrelay.errors import BadRequest
from lightrelay.security import KeyBox, mask_secret

TYPES = ("openai", "local")


class ChannelError(BadRequest):
    """A channel operation that cannot be done."""


def parse_models(spec: str) -> dict[str, str]:
    """``"a,b=upstream-b"`` → ``{"a": "a", "b": "upstream-b"}``."""
    models: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        public, _, own = part.partition("=")
        public, own = public.strip(), (own.strip() or public.strip())
        if not public:
            raise ChannelError(f"模型列表格式不正确: {spec}", f"bad model list: {spec!r} (use a,b=upstream-b)")
        models[public] = own
    if not models:
        raise ChannelError("至少需要一个模型", "a channel needs at least one model (--models a,b=upstream-b)")
    return models


def _check(*, type: str, base_url: str, weight: int) -> None:
    if type not in TYPES:
        raise ChannelError(f"未知渠道类型: {type}", f"unknown channel type {type!r} (openai or local)")
    if type == "openai" and not base_url.startswith(("http://", "https://")):
        raise ChannelError("base-url 必须以 http:// 或 https:// 开头",
                           "--base-url must start with http:// or https:// (e.g. https://api.openai.com/v1)")
    if weight < 1:
        raise ChannelError("权重至少为 1", "weight must be at least 1")


async def add_channel(
    engine: AsyncEngine, keybox: KeyBox, *, name: str, base_url: str = "", api_key: str | None = None,
    models: dict[str, str], type: str = "openai", priority: int = 0, weight: int = 1,
    timeout: float | None = None, enabled: bool = True, connect_timeout: float | None = None,
    first_byte_timeout: float | None = None, idle_timeout: float | None = None,
) -> int:
    """Add a channel; returns its id."""
    name = name.strip()
    if not name:
        raise ChannelError("渠道名不能为空", "a channel needs a name")
    _check(type=type, base_url=base_url, weight=weight)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(channels.insert().values(
                name=name, type=type, base_url=base_url.rstrip("/"), api_key_enc=keybox.seal(api_key),
                models=models, priority=priority, weight=weight, enabled=enabled, timeout=timeout,
                connect_timeout=connect_timeout, first_byte_timeout=first_byte_timeout, idle_timeout=idle_timeout,
                created_at=utcnow(),
            ))
            return result.inserted_primary_key[0]
    except IntegrityError as exc:
        raise ChannelError(f"渠道已存在: {name}", f"a channel named {name!r} exists already") from exc


async def load_channels(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every channel as stored (API key still sealed)."""
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(channels).order_by(channels.c.id))).mappings()]


def public_view(row: dict[str, Any], keybox: KeyBox) -> dict[str, Any]:
    """A channel as shown to people: the API key masked, never in full."""
    view = {k: v for k, v in row.items() if k != "api_key_enc"}
    view["api_key"] = mask_secret(keybox.open(row["api_key_enc"]))
    return view


async def get_channel(engine: AsyncEngine, *, name: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(channels).where(channels.c.name == name))).mappings().first()
    if row is None:
        raise ChannelError(f"没有这个渠道: {name}", f"no channel named {name!r}")
    return dict(row)


async def update_channel(engine: AsyncEngine, keybox: KeyBox, *, name: str, **changes: Any) -> dict[str, Any]:
    """Change fields of a channel (``api_key`` is sealed; None leaves a field as it is)."""
    row = await get_channel(engine, name=name)
    values = {k: v for k, v in changes.items() if v is not None}
    if "api_key" in values:
        values["api_key_enc"] = keybox.seal(values.pop("api_key"))
    if "base_url" in values:
        values["base_url"] = values["base_url"].rstrip("/")
    merged = {**row, **values}
    _check(type=merged["type"], base_url=merged["base_url"], weight=merged["weight"])
    if values:
        async with engine.begin() as conn:
            await conn.execute(update(channels).where(channels.c.id == row["id"]).values(**values))
    return merged


async def delete_channel(engine: AsyncEngine, *, name: str) -> None:
    await get_channel(engine, name=name)
    async with engine.begin() as conn:
        await conn.execute(delete(channels).where(channels.c.name == name))
