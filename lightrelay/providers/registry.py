"""Build the provider for a channel row: the one place that maps a channel ``type`` to its provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from lightrelay.providers.base import Provider
from lightrelay.providers.openai import OpenAIProvider, Timeouts
from lightrelay.security import KeyBox
from lightrelay.settings import Settings


def new_local(settings: Settings) -> Provider:
    from lightrelay.providers.local import LocalProvider  # llama-cpp is optional; import only when used

    return LocalProvider(settings.local_model_path, max_queue=settings.local_max_queue,
                         default_max_tokens=settings.local_max_tokens)


def build_provider(row: dict[str, Any], *, settings: Settings, session: aiohttp.ClientSession,
                   keybox: KeyBox, local: Callable[[], Provider]) -> Provider:
    if row["type"] == "local":
        return local()
    timeouts = Timeouts(connect=row.get("connect_timeout") or settings.upstream_connect_timeout,
                        first_byte=row.get("first_byte_timeout") or settings.upstream_first_byte_timeout,
                        idle=row.get("idle_timeout") or settings.upstream_idle_timeout,
                        total=row["timeout"] or settings.upstream_total_timeout)
    return OpenAIProvider(session, base_url=row["base_url"], api_key=keybox.open(row["api_key_enc"]),
                          timeouts=timeouts)


def new_session() -> aiohttp.ClientSession:
    """The upstream HTTP client: one pool for all channels, no connection cap. No cookie jar:
    a cookie an upstream sets for one caller's call must not ride along on another's."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
