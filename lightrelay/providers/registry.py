"""Build the provider for a channel row: the one place that maps a channel ``type`` to its provider."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from lightrelay.providers.anthropic import AnthropicProvider
from lightrelay.providers.base import Provider
from lightrelay.providers.gemini import GeminiProvider
from lightrelay.providers.keys import Key, KeyRing
from lightrelay.providers.openai import AzureProvider, OpenAIProvider, Timeouts
from lightrelay.security import KeyBox
from lightrelay.settings import Settings


def new_local(settings: Settings, on_state: Callable[[dict[str, Any]], None] | None = None) -> Provider:
    from lightrelay.providers.local import LocalProvider  # its child process starts on first use

    return LocalProvider(settings.local_model_path, max_queue=settings.local_max_queue,
                         default_max_tokens=settings.local_max_tokens,
                         start_attempts=settings.local_start_attempts, on_state=on_state)


def key_ring(row: dict[str, Any], keybox: KeyBox,
             store: Callable[[int, str], Awaitable[Any]] | None = None) -> KeyRing:
    """The channel's keys (``row["keys"]``, as ``services.channels`` loads them; else the single
    ``api_key_enc``), with their stored retirements."""
    if "keys" in row:
        keys = [Key(k["position"], keybox.open(k["key_enc"]) or "", k.get("retired_reason")) for k in row["keys"]]
    else:
        secret = keybox.open(row.get("api_key_enc"))
        keys = [Key(0, secret)] if secret else []
    return KeyRing(keys, channel=row["name"], store=store)


def build_provider(row: dict[str, Any], *, settings: Settings, session: aiohttp.ClientSession,
                   keybox: KeyBox, local: Callable[[], Provider],
                   store_retired: Callable[[dict[str, Any], int, str], Awaitable[Any]] | None = None) -> Provider:
    """``store_retired(row, position, reason)``: how a key's retirement is stored (None: memory only)."""
    kind = row["type"]
    if kind == "local":
        return local()
    timeouts = Timeouts(connect=row.get("connect_timeout") or settings.upstream_connect_timeout,
                        first_byte=row.get("first_byte_timeout") or settings.upstream_first_byte_timeout,
                        idle=row.get("idle_timeout") or settings.upstream_idle_timeout,
                        total=row["timeout"] or settings.upstream_total_timeout)
    store = None if store_retired is None else (lambda position, reason: store_retired(row, position, reason))
    keys = key_ring(row, keybox, store)
    if kind == "anthropic":
        return AnthropicProvider(session, base_url=row["base_url"], keys=keys, timeouts=timeouts,
                                 default_max_tokens=settings.anthropic_max_tokens,
                                 api_version=row.get("api_version"))
    if kind == "gemini":
        return GeminiProvider(session, base_url=row["base_url"], keys=keys, timeouts=timeouts)
    if kind == "azure":
        return AzureProvider(session, base_url=row["base_url"], keys=keys, timeouts=timeouts,
                             api_version=row.get("api_version") or settings.azure_api_version)
    return OpenAIProvider(session, base_url=row["base_url"], keys=keys, timeouts=timeouts)


def new_session() -> aiohttp.ClientSession:
    """The upstream HTTP client: one pool for all channels, no connection cap. No cookie jar:
    a cookie an upstream sets for one caller's call must not ride along on another's."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
