"""Model weights: one call of a model costs ``weight`` units of the daily count and of the
extra balance (``lightrelay model set gpt-4 --weight 5``). Default 1: a model without a row
costs one. The relay keeps them in memory, reloaded with the channels."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.db.models import model_weights
from lightrelay.errors import BadRequest

MAX_WEIGHT = 10_000


async def load_weights(engine: AsyncEngine) -> dict[str, int]:
    """Every model whose weight is not 1."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(model_weights.c.model, model_weights.c.weight))).all()
    return {model: weight for model, weight in rows if weight != 1}


async def set_weight(engine: AsyncEngine, *, model: str, weight: int) -> None:
    model = model.strip()
    if not model or len(model) > 200:
        raise BadRequest("模型名不正确", "give a model name (at most 200 characters)", param="model")
    if not 1 <= weight <= MAX_WEIGHT:
        raise BadRequest(f"权重应为 1 到 {MAX_WEIGHT} 的整数", f"a weight must be from 1 to {MAX_WEIGHT}",
                         param="weight")
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    async with engine.begin() as conn:
        if weight == 1:
            await conn.execute(delete(model_weights).where(model_weights.c.model == model))
        else:
            stmt = insert(model_weights).values(model=model, weight=weight)
            await conn.execute(stmt.on_conflict_do_update(index_elements=["model"], set_={"weight": weight}))
