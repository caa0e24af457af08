"""Accounts and their API tokens."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay import security
from lightrelay.clock import utcnow
from lightrelay.db.models import accounts, tokens
from lightrelay.errors import BadRequest, NotFound


class AccountError(BadRequest):
    """An account operation that cannot be done (unknown email, duplicate, …)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the account behind a token, as the hot path needs it."""

    account_id: int
    email: str
    token_id: int
    daily_limit: int | None
    gpt4: bool
    is_admin: bool
    disabled: bool
    image_limit: int | None = None  # the account's own images per day; None: the setting's, -1: unlimited
    extra_calls: int = 0  # the balance when read (the reservation decides; this is for show)
    # the token's own limits (None = none): checked in the relay from this cached answer
    models: frozenset[str] | None = None
    expires_at: float | None = None  # unix seconds
    ips: tuple[IPv4Network | IPv6Network, ...] | None = None
    rpm: int | None = None
    token_limit: int | None = None  # the token's daily limit, counted inside the account's


def _aware(when: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC)."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


MAX_IPS = 100


def parse_ips(text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """``"10.0.0.0/8, 192.168.1.7"`` → networks; AccountError naming the bad entry."""
    nets = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            nets.append(ip_network(item, strict=False))
        except ValueError:
            raise AccountError(f"IP 地址或网段格式不正确: {item[:60]}",
                               f"not an IP address or CIDR range: {item[:60]}", param="ips") from None
    if not nets or len(nets) > MAX_IPS:
        raise AccountError(f"请给出 1 到 {MAX_IPS} 个地址或网段", f"give 1 to {MAX_IPS} addresses or ranges",
                           param="ips")
    return tuple(nets)


def parse_day_end(text: str, tz: tzinfo) -> datetime:
    """``YYYY-MM-DD`` → the end of that day in the relay's time zone (valid through that day)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise AccountError(f"日期格式应为 YYYY-MM-DD: {text[:40]}", f"a date must be YYYY-MM-DD: {text[:40]}",
                           param="expires") from None
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)


def parse_models(text: str) -> list[str]:
    models = sorted({m.strip() for m in text.split(",") if m.strip()})
    if not models or len(models) > 200 or any(len(m) > 200 for m in models):
        raise AccountError("模型列表不正确", "give 1 to 200 model names, comma-separated", param="models")
    return models


@dataclass(frozen=True, slots=True)
class TokenLimits:
    """A token's own limits (None = none)."""

    models: list[str] | None = None
    expires_at: datetime | None = None
    ips: str | None = None  # normalised CIDRs, comma-separated
    rpm: int | None = None
    daily_limit: int | None = None

    @classmethod
    def parse(cls, *, models: str | None = None, expires: str | None = None, ips: str | None = None,
              rpm: int | str | None = None, daily_limit: int | str | None = None, tz: tzinfo = UTC) -> TokenLimits:
        """From user input (CLI or form); AccountError naming what is wrong. Empty = no limit."""
        def number(value: int | str | None, name: str, low: int) -> int | None:
            if value is None or (isinstance(value, str) and not value.strip()):
                return None
            try:
                n = int(value)
            except ValueError:
                n = -1
            if not low <= n <= 10_000_000:
                raise AccountError(f"{name} 应为 {low} 到 10000000 的整数", f"{name} must be a whole number "
                                   f"from {low} to 10000000", param=name)
            return n

        return cls(models=parse_models(models) if models and models.strip() else None,
                   expires_at=parse_day_end(expires, tz) if expires and expires.strip() else None,
                   ips=",".join(str(n) for n in parse_ips(ips)) if ips and ips.strip() else None,
                   rpm=number(rpm, "rpm", 1), daily_limit=number(daily_limit, "daily_limit", 0))


_NOT_IN_EMAIL = set('<>()[]\\,;:"@')


def normalize_email(email: str) -> str:
    """Lower-cased, or AccountError: one ``@``, a dotted domain, no spaces, controls (CR/LF: header
    injection) or address punctuation — checked before anything is written or mailed."""
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    labels = domain.split(".")
    if (not local or len(labels) < 2 or not all(labels) or len(email) > 254
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c in _NOT_IN_EMAIL for c in local + domain)):
        raise AccountError(f"邮箱格式不正确: {email}", f"not a valid email address: {email}")
    return email


async def create_account(
    engine: AsyncEngine,
    *,
    email: str,
    password: str | None = None,
    daily_limit: int | None,
    gpt4: bool = False,
    is_admin: bool = False,
    active: bool = True,
    invited_by: int | None = None,
) -> int:
    """Create an account; returns its id."""
    email = normalize_email(email)
    values = dict(
        email=email,
        password_hash=await security.hash_password_off_loop(password) if password else None,
        daily_limit=daily_limit,
        gpt4=gpt4,
        is_admin=is_admin,
        disabled=False,
        active=active,
        created_at=utcnow(),
        invited_by=invited_by,
    )
    try:
        async with engine.begin() as conn:
            result = await conn.execute(accounts.insert().values(**values))
            return result.inserted_primary_key[0]
    except IntegrityError as exc:
        raise AccountError(f"账号已存在: {email}", f"an account already exists for {email}") from exc


async def get_account(engine: AsyncEngine, *, email: str) -> dict[str, Any]:
    """One account as a dict; NotFound-style AccountError when there is none."""
    email = normalize_email(email)
    async with engine.connect() as conn:
        row = (await conn.execute(select(accounts).where(accounts.c.email == email))).mappings().first()
    if row is None:
        raise AccountError(f"没有这个账号: {email}", f"no account for {email}")
    return dict(row)


async def list_accounts(engine: AsyncEngine, *, search: str = "", limit: int = 1000) -> list[dict[str, Any]]:
    """Accounts, newest first, optionally filtered by a piece of the email."""
    stmt = select(accounts).order_by(accounts.c.id.desc()).limit(limit)
    if search:
        stmt = stmt.where(accounts.c.email.contains(search.lower()))
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]


_UNSET: Any = object()


async def update_account(
    engine: AsyncEngine,
    *,
    email: str,
    daily_limit: int | None = _UNSET,
    image_limit: int | None = _UNSET,
    gpt4: bool | None = None,
    disabled: bool | None = None,
    is_admin: bool | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """Change an account's limit, GPT-4 access, disabled flag or password."""
    account = await get_account(engine, email=email)
    values: dict[str, Any] = {}
    if daily_limit is not _UNSET:
        values["daily_limit"] = daily_limit
    if image_limit is not _UNSET:
        values["image_limit"] = image_limit
    if gpt4 is not None:
        values["gpt4"] = gpt4
    if disabled is not None:
        values["disabled"] = disabled
    if is_admin is not None:
        values["is_admin"] = is_admin
    if password is not None:
        values["password_hash"] = await security.hash_password_off_loop(password)
    if values:
        async with engine.begin() as conn:
            await conn.execute(update(accounts).where(accounts.c.id == account["id"]).values(**values))
        account.update(values)
    return account


async def add_token(engine: AsyncEngine, *, account_id: int, name: str = "",
                    limits: TokenLimits | None = None) -> str:
    """Make a new API token for an account; returns it in full (the only time it is seen)."""
    token = security.new_token()
    limits = limits or TokenLimits()
    async with engine.begin() as conn:
        await conn.execute(
            tokens.insert().values(
                account_id=account_id,
                token_hash=security.hash_token(token),
                masked=security.mask_token(token),
                name=name[:100],
                created_at=utcnow(),
                models=limits.models, expires_at=limits.expires_at, ips=limits.ips, rpm=limits.rpm,
                daily_limit=limits.daily_limit,
            )
        )
    return token


async def list_tokens(engine: AsyncEngine, *, account_id: int) -> list[dict[str, Any]]:
    """An account's tokens, masked, newest first."""
    stmt = (
        select(tokens.c.id, tokens.c.masked, tokens.c.name, tokens.c.created_at, tokens.c.revoked_at,
               tokens.c.models, tokens.c.expires_at, tokens.c.ips, tokens.c.rpm, tokens.c.daily_limit)
        .where(tokens.c.account_id == account_id)
        .order_by(tokens.c.id.desc())
    )
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def revoke_token(engine: AsyncEngine, *, token: str | None = None, token_id: int | None = None,
                       account_id: int | None = None) -> None:
    """Revoke a token, given in full or by id (optionally only if it belongs to account_id)."""
    stmt = update(tokens).where(tokens.c.revoked_at.is_(None)).values(revoked_at=utcnow())
    if token is not None:
        stmt = stmt.where(tokens.c.token_hash == security.hash_token(token.strip()))
    elif token_id is not None:
        stmt = stmt.where(tokens.c.id == token_id)
    else:
        raise ValueError("revoke_token needs token or token_id")
    if account_id is not None:
        stmt = stmt.where(tokens.c.account_id == account_id)
    async with engine.begin() as conn:
        if (await conn.execute(stmt)).rowcount == 0:
            raise NotFound("没有这个有效令牌", "no such active token", code="token_not_found")


async def find_principal(engine: AsyncEngine, *, token_hash: str) -> Principal | None:
    """The caller behind a token hash, or None for an unknown or revoked token."""
    stmt = (
        select(
            tokens.c.id.label("token_id"), tokens.c.token_hash, accounts.c.id, accounts.c.email,
            accounts.c.daily_limit, accounts.c.image_limit, accounts.c.gpt4, accounts.c.is_admin,
            accounts.c.disabled,
            accounts.c.active, accounts.c.extra_calls, tokens.c.models, tokens.c.expires_at, tokens.c.ips,
            tokens.c.rpm, tokens.c.daily_limit.label("token_limit"),
        )
        .join(accounts, accounts.c.id == tokens.c.account_id)
        .where(tokens.c.token_hash == token_hash, tokens.c.revoked_at.is_(None))
    )
    async with engine.connect() as conn:
        row = (await conn.execute(stmt)).first()
    if row is None or not security.same_hash(row.token_hash, token_hash):
        return None
    return Principal(
        image_limit=row.image_limit,
        account_id=row.id, email=row.email, token_id=row.token_id, daily_limit=row.daily_limit,
        gpt4=bool(row.gpt4), is_admin=bool(row.is_admin), disabled=bool(row.disabled) or not row.active,
        extra_calls=row.extra_calls or 0,
        models=frozenset(row.models) if row.models is not None else None,
        expires_at=_aware(row.expires_at).timestamp() if row.expires_at is not None else None,
        ips=parse_ips(row.ips) if row.ips else None, rpm=row.rpm, token_limit=row.token_limit,
    )


async def count_accounts(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(accounts))).scalar_one()


async def get_account_by_id(engine: AsyncEngine, *, account_id: int) -> dict[str, Any] | None:
    """One account as a dict, or None."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).mappings().first()
    return dict(row) if row else None


async def activate_account(engine: AsyncEngine, *, account_id: int, invite_reward: int = 0) -> None:
    """Mark an account's email as verified (it may call the API from now on). If it signed up with an
    invite code, both it and the inviter get ``invite_reward`` extra calls — once: only the change from
    inactive to active credits, in the same transaction."""
    a = accounts.c
    async with engine.begin() as conn:
        row = (await conn.execute(update(accounts).where(a.id == account_id, a.active.is_(False))
                                  .values(active=True).returning(a.invited_by))).first()
        if row is not None and row.invited_by is not None and invite_reward > 0:
            await conn.execute(update(accounts).where(a.id.in_([account_id, row.invited_by]))
                               .values(extra_calls=a.extra_calls + invite_reward))


async def invite_code(engine: AsyncEngine, *, account_id: int) -> str:
    """The account's invite code, made on first need."""
    a = accounts.c
    async with engine.begin() as conn:
        code = (await conn.execute(select(a.invite_code).where(a.id == account_id))).scalar_one_or_none()
        if code:
            return code
        code = base64.b32encode(secrets.token_bytes(10)).decode()[:12]
        await conn.execute(update(accounts).where(a.id == account_id, a.invite_code.is_(None)).values(invite_code=code))
        return (await conn.execute(select(a.invite_code).where(a.id == account_id))).scalar_one()


async def inviter(engine: AsyncEngine, *, code: str) -> int | None:
    """The active account an invite code belongs to, or None."""
    code = code.strip().upper()[:32]
    if not code:
        return None
    a = accounts.c
    async with engine.connect() as conn:
        return (await conn.execute(select(a.id).where(a.invite_code == code, a.active.is_(True),
                                                      a.disabled.is_(False)))).scalar_one_or_none()


async def has_admin(engine: AsyncEngine) -> bool:
    """Whether any active account may use the admin console."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(accounts.c.id).where(accounts.c.is_admin.is_(True)).limit(1))).first()
    return row is not None
