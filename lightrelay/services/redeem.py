"""Redemption codes (兑换码): batches made by an admin, redeemed once for extra calls.

A code is 100 random bits (``XXXXX-XXXXX-XXXXX-XXXXX``, base32), stored only as its
sha256 like an API token, so a database leak gives none away. Redeeming is one
conditional UPDATE of the code's row (``used_at IS NULL AND NOT disabled AND not
expired``) and the account's balance in the same transaction, so a code credits
exactly once however many callers race for it, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay import security
from lightrelay.clock import utcnow
from lightrelay.db.models import accounts, redeem_codes
from lightrelay.errors import BadRequest, Conflict, Forbidden, Gone, NotFound

MAX_BATCH = 10_000  # codes per batch
MAX_CALLS = 10_000_000  # calls (or image calls) per code
CODE_CHARS = 20  # base32 characters: 100 random bits


def new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode()[:CODE_CHARS]
    return "-".join(raw[i:i + 5] for i in range(0, CODE_CHARS, 5))


def normalize(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())[:64]


def hash_code(code: str) -> str:
    return security.hash_token("code:" + normalize(code))


def mask(code: str) -> str:
    return f"{code[:5]}…{code[-4:]}"


@dataclass(frozen=True, slots=True)
class Grant:
    """What a redeemed code gave."""

    calls: int
    image_calls: int
    gpt4: bool


def _check_amount(value: int, name: str) -> int:
    if not 0 <= value <= MAX_CALLS:
        raise BadRequest(f"{name} 应为 0 到 {MAX_CALLS} 的整数", f"{name} must be from 0 to {MAX_CALLS}", param=name)
    return value


async def add_codes(engine: AsyncEngine, *, calls: int, count: int = 1, gpt4: bool = False, image_calls: int = 0,
                    expires_at: datetime | None = None, note: str = "") -> tuple[str, list[str]]:
    """Make a batch of ``count`` codes; returns (batch id, the codes in full — the only time they are seen)."""
    if not 1 <= count <= MAX_BATCH:
        raise BadRequest(f"每批 1 到 {MAX_BATCH} 个兑换码", f"a batch holds 1 to {MAX_BATCH} codes", param="count")
    _check_amount(calls, "calls")
    _check_amount(image_calls, "image_calls")
    if not calls and not image_calls and not gpt4:
        raise BadRequest("兑换码至少要给出次数或 GPT-4 权限", "a code must give calls, image calls or GPT-4 access")
    batch, now = secrets.token_hex(6), utcnow()
    codes = [new_code() for _ in range(count)]
    rows = [{"code_hash": hash_code(c), "masked": mask(c), "batch": batch, "calls": calls, "image_calls": image_calls,
             "gpt4": gpt4, "expires_at": expires_at, "note": note[:200], "disabled": False, "created_at": now}
            for c in codes]
    async with engine.begin() as conn:
        for i in range(0, len(rows), 500):
            await conn.execute(redeem_codes.insert(), rows[i:i + 500])
    return batch, codes


async def list_codes(engine: AsyncEngine, *, unused: bool = False, batch: str | None = None,
                     limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
    """Codes (masked), newest first, with who used them."""
    c = redeem_codes.c
    stmt = (select(redeem_codes, accounts.c.email.label("used_by_email"))
            .outerjoin(accounts, accounts.c.id == c.used_by).order_by(c.id.desc()).limit(limit).offset(offset))
    if unused:
        stmt = stmt.where(c.used_at.is_(None), c.disabled.is_(False),
                          or_(c.expires_at.is_(None), c.expires_at > utcnow()))
    if batch:
        stmt = stmt.where(c.batch == batch)
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def count_codes(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(redeem_codes))).scalar_one()


async def disable_code(engine: AsyncEngine, *, code: str | None = None, code_id: int | None = None) -> None:
    """Disable an unused code (given in full, or by id)."""
    c = redeem_codes.c
    stmt = update(redeem_codes).where(c.used_at.is_(None)).values(disabled=True)
    stmt = stmt.where(c.code_hash == hash_code(code)) if code is not None else stmt.where(c.id == code_id)
    async with engine.begin() as conn:
        if (await conn.execute(stmt)).rowcount == 0:
            raise NotFound("没有这个未使用的兑换码", "no such unused redemption code", code="code_not_found")


async def redeem(engine: AsyncEngine, *, account_id: int, code: str) -> Grant:
    """Use a code for an account: exactly once. Unknown 404, disabled 403, used 409, expired 410."""
    if not code or not code.strip() or len(code) > 100:
        raise BadRequest("请输入兑换码", "a redemption code is required", param="code", code="code_required")
    c, a, key, now = redeem_codes.c, accounts.c, hash_code(code), utcnow()
    async with engine.begin() as conn:
        row = (await conn.execute(
            update(redeem_codes)
            .where(c.code_hash == key, c.used_at.is_(None), c.disabled.is_(False),
                   or_(c.expires_at.is_(None), c.expires_at > now))
            .values(used_at=now, used_by=account_id)
            .returning(c.calls, c.image_calls, c.gpt4))).first()
        if row is not None:
            values: dict[str, Any] = {"extra_calls": a.extra_calls + row.calls,
                                      "extra_image_calls": a.extra_image_calls + row.image_calls}
            if row.gpt4:
                values["gpt4"] = True
            await conn.execute(update(accounts).where(a.id == account_id).values(**values))
            return Grant(calls=row.calls, image_calls=row.image_calls, gpt4=bool(row.gpt4))
        found = (await conn.execute(select(c.used_at, c.disabled, c.expires_at)
                                    .where(c.code_hash == key))).first()
    if found is None:
        raise NotFound("兑换码不存在", "no such redemption code", param="code", code="code_not_found")
    if found.used_at is not None:
        raise Conflict("兑换码已被使用", "this redemption code has already been used", param="code",
                       code="code_used")
    if found.disabled:
        raise Forbidden("兑换码已停用", "this redemption code has been disabled", param="code",
                        code="code_disabled")
    raise Gone("兑换码已过期", "this redemption code has expired", param="code", code="code_expired")


def state_of(row: dict[str, Any]) -> str:
    """unused | used | disabled | expired"""
    if row["used_at"] is not None:
        return "used"
    if row["disabled"]:
        return "disabled"
    expires = row["expires_at"]
    if expires is not None and (expires if expires.tzinfo else expires.replace(tzinfo=UTC)) <= utcnow():
        return "expired"
    return "unused"
