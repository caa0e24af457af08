"""``lightrelay channel test``: one tiny call to one channel, timed."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.providers.base import ChatCall
from lightrelay.providers.registry import build_provider, new_local, new_session
from lightrelay.security import KeyBox
from lightrelay.services.channels import get_channel
from lightrelay.settings import Settings


async def test_channel(settings: Settings, engine: AsyncEngine, *, name: str) -> tuple[float, str]:
    """Ask the channel's first model to say one word; returns (milliseconds, reply)."""
    row = await get_channel(engine, name=name)
    public, own = next(iter(row["models"].items()))
    async with new_session() as session:
        provider = build_provider(row, settings=settings, session=session, keybox=KeyBox(settings.secret()),
                                  local=lambda: new_local(settings))
        started = time.perf_counter()
        try:
            reply = await provider.complete(ChatCall(messages=[{"role": "user", "content": "Say hi."}], model=own,
                                                     public_model=public, params={"max_tokens": 8}))
        finally:
            await provider.close()
    ms = (time.perf_counter() - started) * 1000
    return ms, (reply["choices"][0]["message"].get("content") or "") if reply.get("choices") else ""


async def upstream_models(settings: Settings, engine: AsyncEngine, *, name: str) -> list[str]:
    """The model names the channel's upstream says it serves (``lightrelay channel models``)."""
    row = await get_channel(engine, name=name)
    async with new_session() as session:
        provider = build_provider(row, settings=settings, session=session, keybox=KeyBox(settings.secret()),
                                  local=lambda: new_local(settings))
        try:
            list_models = getattr(provider, "list_models", None)
            if list_models is None:  # the built-in model
                return sorted(settings.default_models)
            return await list_models()
        finally:
            await provider.close()
