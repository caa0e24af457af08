"""Channels: the upstreams a model name routes to. API keys are sealed at rest.

A channel has any number of API keys (``channel_keys``, in order); the relay uses them round-robin
and retires one the upstream refuses for good, with the reason (``retire_key``), until an admin puts
it back (``enable_key``). ``channels.api_key_enc`` mirrors the first key for older readers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from lightrelay.clock import utcnow
from lightrelay.db.models import channel_keys, channels
from lightrelay.errors import BadRequest
from lightrelay.security import KeyBox, mask_secret

TYPES = ("openai", "anthropic", "gemini", "azure", "local")
DEFAULT_BASE_URLS = {"anthropic": "https://api.anthropic.com", "gemini": "https://generativelanguage.googleapis.com"}


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


def _good_url(url: str) -> bool:
    """http(s)://host[:port]/… that parses (a port in range, brackets closed, no spaces or controls)."""
    if not url.startswith(("http://", "https://")) or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError:
        return False
    return bool(parts.hostname)


def _check(*, type: str, base_url: str, weight: int) -> None:
    if type not in TYPES:
        raise ChannelError(f"未知渠道类型: {type}", f"unknown channel type {type!r} ({', '.join(TYPES)})")
    if type != "local" and not _good_url(base_url):
        raise ChannelError("base-url 必须以 http:// 或 https:// 开头",
                           "--base-url must start with http:// or https:// (e.g. https://api.openai.com/v1)")
    if weight < 1:
        raise ChannelError("权重至少为 1", "weight must be at least 1")


async def add_channel(
    engine: AsyncEngine, keybox: KeyBox, *, name: str, base_url: str = "", api_key: str | None = None,
    models: dict[str, str], type: str = "openai", priority: int = 0, weight: int = 1,
    timeout: float | None = None, enabled: bool = True, connect_timeout: float | None = None,
    first_byte_timeout: float | None = None, idle_timeout: float | None = None,
    api_keys: list[str] | None = None, api_version: str | None = None,
) -> int:
    """Add a channel; returns its id. ``api_keys``: several keys (``api_key`` is the one-key form)."""
    name = name.strip()
    if not name:
        raise ChannelError("渠道名不能为空", "a channel needs a name")
    base_url = base_url or DEFAULT_BASE_URLS.get(type, "")
    _check(type=type, base_url=base_url, weight=weight)
    keys = _key_list(api_key, api_keys)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(channels.insert().values(
                name=name, type=type, base_url=base_url.rstrip("/"),
                api_key_enc=keybox.seal(keys[0]) if keys else None,
                models=models, priority=priority, weight=weight, enabled=enabled, timeout=timeout,
                connect_timeout=connect_timeout, first_byte_timeout=first_byte_timeout, idle_timeout=idle_timeout,
                created_at=utcnow(), api_version=api_version or None,
            ))
            channel_id = result.inserted_primary_key[0]
            await _store_keys(conn, keybox, channel_id, keys)
            return channel_id
    except IntegrityError as exc:
        raise ChannelError(f"渠道已存在: {name}", f"a channel named {name!r} exists already") from exc


def _key_list(api_key: str | None, api_keys: list[str] | None) -> list[str]:
    keys = [k.strip() for k in (api_keys if api_keys is not None else [api_key] if api_key else []) if k and k.strip()]
    if len(set(keys)) != len(keys):
        raise ChannelError("密钥重复", "the same API key is given twice")
    return keys


def read_key_file(text: str) -> list[str]:
    """The keys of a key file: one a line; blank lines and ``#`` comments skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


async def _store_keys(conn: AsyncConnection, keybox: KeyBox, channel_id: int, keys: list[str]) -> None:
    await conn.execute(delete(channel_keys).where(channel_keys.c.channel_id == channel_id))
    if keys:
        await conn.execute(channel_keys.insert(), [{"channel_id": channel_id, "position": i,
                                                    "key_enc": keybox.seal(k)} for i, k in enumerate(keys)])


def _with_keys(rows: list[dict[str, Any]], key_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_channel: dict[int, list[dict[str, Any]]] = {}
    for k in key_rows:
        by_channel.setdefault(k["channel_id"], []).append(k)
    for row in rows:
        row["keys"] = sorted(by_channel.get(row["id"], []), key=lambda k: k["position"])
    return rows


async def load_channels(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every channel as stored (API key still sealed)."""
    async with engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(select(channels).order_by(channels.c.id))).mappings()]
        keys = [dict(r) for r in (await conn.execute(select(channel_keys))).mappings()]
    return _with_keys(rows, keys)


def public_view(row: dict[str, Any], keybox: KeyBox) -> dict[str, Any]:
    """A channel as shown to people: the API keys masked, never in full; each key's retirement reason."""
    view = {k: v for k, v in row.items() if k not in ("api_key_enc", "keys")}
    view["api_key"] = mask_secret(keybox.open(row["api_key_enc"]))
    view["keys"] = [{"n": k["position"] + 1, "key": mask_secret(keybox.open(k["key_enc"])),
                     "retired": k.get("retired_reason"), "retired_at": k.get("retired_at")} for k in row.get("keys", ())]
    return view


async def get_channel(engine: AsyncEngine, *, name: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(channels).where(channels.c.name == name))).mappings().first()
        if row is None:
            raise ChannelError(f"没有这个渠道: {name}", f"no channel named {name!r}")
        keys = [dict(r) for r in (await conn.execute(
            select(channel_keys).where(channel_keys.c.channel_id == row["id"]))).mappings()]
    return _with_keys([dict(row)], keys)[0]


async def update_channel(engine: AsyncEngine, keybox: KeyBox, *, name: str, **changes: Any) -> dict[str, Any]:
    """Change fields of a channel (``api_key`` / ``api_keys`` replace its keys, sealed; None leaves a
    field as it is)."""
    row = await get_channel(engine, name=name)
    values = {k: v for k, v in changes.items() if v is not None}
    keys = None
    if "api_key" in values or "api_keys" in values:
        keys = _key_list(values.pop("api_key", None), values.pop("api_keys", None))
        values["api_key_enc"] = keybox.seal(keys[0]) if keys else None
    if "base_url" in values:
        values["base_url"] = values["base_url"].rstrip("/")
    merged = {**row, **values}
    _check(type=merged["type"], base_url=merged["base_url"], weight=merged["weight"])
    if values:
        async with engine.begin() as conn:
            await conn.execute(update(channels).where(channels.c.id == row["id"]).values(**values))
            if keys is not None:
                await _store_keys(conn, keybox, row["id"], keys)
    return merged


async def retire_key(engine: AsyncEngine, *, channel_id: int, position: int, reason: str) -> None:
    """Mark one key of a channel retired, with the upstream's reason (a key already retired keeps its first)."""
    async with engine.begin() as conn:
        await conn.execute(update(channel_keys).where(
            channel_keys.c.channel_id == channel_id, channel_keys.c.position == position,
            channel_keys.c.retired_reason.is_(None)).values(retired_reason=reason[:500], retired_at=utcnow()))


async def enable_key(engine: AsyncEngine, keybox: KeyBox, *, name: str, which: str) -> list[int]:
    """Put retired keys of a channel back in use: ``which`` is a key number as listed (``2`` or ``#2``),
    the key itself, or ``all``. Returns the numbers put back."""
    row = await get_channel(engine, name=name)
    which = which.strip()
    if which.lower() == "all":
        chosen = [k for k in row["keys"] if k["retired_reason"] is not None]
    elif which.lstrip("#").isdigit():
        chosen = [k for k in row["keys"] if k["position"] + 1 == int(which.lstrip("#"))]
    else:
        chosen = [k for k in row["keys"] if keybox.open(k["key_enc"]) == which]
    if not chosen:
        raise ChannelError(f"渠道 {name} 没有这个密钥: {which if which.lstrip('#').isdigit() else '…'}",
                           f"channel {name!r} has no such key (give its number from `channel list`, or all)")
    async with engine.begin() as conn:
        for k in chosen:
            await conn.execute(update(channel_keys).where(channel_keys.c.id == k["id"]).values(
                retired_reason=None, retired_at=None))
    return [k["position"] + 1 for k in chosen]


async def delete_channel(engine: AsyncEngine, *, name: str) -> None:
    row = await get_channel(engine, name=name)
    async with engine.begin() as conn:
        await conn.execute(delete(channel_keys).where(channel_keys.c.channel_id == row["id"]))
        await conn.execute(delete(channels).where(channels.c.name == name))
