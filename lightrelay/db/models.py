"""The tables. Plain SQLAlchemy Core tables: the services write SQL that runs the
same on SQLite and PostgreSQL; Alembic migrations (``migrations/versions``) create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200)),
    Column("daily_limit", Integer),  # NULL = unlimited
    Column("image_limit", Integer),  # images per day; NULL = LIGHTRELAY_DEFAULT_IMAGE_LIMIT, -1 = unlimited
    Column("gpt4", Boolean, nullable=False, default=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("active", Boolean, nullable=False, default=True),  # email verified
    Column("created_at", DateTime(timezone=True), nullable=False),
    # issue 13 (migration 0006): redeemed extra calls, invites
    Column("extra_calls", Integer, nullable=False, default=0, server_default="0"),  # spent after the daily ones
    Column("extra_image_calls", Integer, nullable=False, default=0, server_default="0"),
    Column("invite_code", String(32), unique=True),  # made on first need
    Column("invited_by", Integer),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("masked", String(64), nullable=False),  # sk-3d76…6f1d7b, safe to show
    Column("name", String(100), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    # per-token limits (migration 0006); NULL = none
    Column("models", JSON),  # list of allowed public model names
    Column("expires_at", DateTime(timezone=True)),
    Column("ips", Text),  # comma-separated CIDRs
    Column("rpm", Integer),
    Column("daily_limit", Integer),  # counted inside the account's
)

channels = Table(
    "channels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("type", String(20), nullable=False),  # openai | anthropic | gemini | azure | local
    Column("base_url", String(500), nullable=False, default=""),
    Column("api_key_enc", Text),  # Fernet token, never the key itself
    Column("models", JSON, nullable=False),  # {"public-name": "upstream-name"}
    Column("priority", Integer, nullable=False, default=0),
    Column("weight", Integer, nullable=False, default=1),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("timeout", Float),  # total seconds; NULL = relay default
    Column("connect_timeout", Float),  # seconds; NULL = LIGHTRELAY_UPSTREAM_CONNECT_TIMEOUT
    Column("first_byte_timeout", Float),  # seconds; NULL = LIGHTRELAY_UPSTREAM_FIRST_BYTE_TIMEOUT
    Column("idle_timeout", Float),  # seconds between stream events; NULL = LIGHTRELAY_UPSTREAM_IDLE_TIMEOUT
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("api_version", String(40)),  # azure: api-version; anthropic: anthropic-version (migration 0005)
)

daily_counts = Table(
    "daily_counts",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD in the relay's time zone
    Column("count", Integer, nullable=False, default=0),
)

image_counts = Table(  # images generated per account per day (same shape as daily_counts)
    "image_counts",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("count", Integer, nullable=False, default=0),
)

usage = Table(
    "usage",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("day", String(10), nullable=False),
    Column("account_id", Integer),
    Column("token_id", Integer),
    Column("model", String(200), nullable=False),
    Column("channel", String(100)),
    Column("door", String(10), nullable=False),  # light | openai
    Column("stream", Boolean, nullable=False),
    Column("status", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("first_byte_ms", Float),
    Column("total_ms", Float, nullable=False),
    Column("charged", Boolean, nullable=False),
    Column("partial", Boolean, nullable=False, default=False),
    Column("error", Text),
    Index("ix_usage_account_created", "account_id", "created_at"),
    Index("ix_usage_day", "day"),
    Index("ix_usage_created", "created_at"),  # migration 0006: usage search by time, by token, by model
    Index("ix_usage_token_id", "token_id", "id"),
    Index("ix_usage_model_id", "model", "id"),
)

# -- web console -------------------------------------------------------------

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 of the cookie's session id
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

email_codes = Table(
    "email_codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("purpose", String(20), nullable=False),  # register | reset
    Column("code_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("tries", Integer, nullable=False, default=0),
    Column("used", Boolean, nullable=False, default=False),
    Index("ix_email_codes_email_purpose", "email", "purpose"),
)

# -- business (issue 13, migration 0006) -------------------------------------

redeem_codes = Table(
    "redeem_codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("masked", String(32), nullable=False),
    Column("batch", String(32), nullable=False),
    Column("calls", Integer, nullable=False, default=0),
    Column("image_calls", Integer, nullable=False, default=0),
    Column("gpt4", Boolean, nullable=False, default=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("note", String(200), nullable=False, default=""),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("used_by", Integer),
    Index("ix_redeem_codes_batch", "batch"),
)

token_counts = Table(
    "token_counts",
    metadata,
    Column("token_id", Integer, ForeignKey("tokens.id", ondelete="CASCADE"), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("count", Integer, nullable=False, default=0),
    sqlite_with_rowid=False,
)

model_weights = Table(
    "model_weights",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("weight", Integer, nullable=False, default=1),
)


def _usage_totals(name: str, period: str, size: int) -> Table:
    """Usage totals per period and account, model, channel, door: kept up to date as usage rows are
    written (same transaction), so dashboards read them and old rows can be pruned without losing them."""
    return Table(
        name,
        metadata,
        Column(period, String(size), primary_key=True),
        Column("account_id", Integer, primary_key=True),  # 0: none
        Column("model", String(200), primary_key=True),
        Column("channel", String(100), primary_key=True),  # "": none
        Column("door", String(10), primary_key=True),
        Column("calls", Integer, nullable=False, default=0),
        Column("charged", Integer, nullable=False, default=0),
        Column("errors", Integer, nullable=False, default=0),
        Column("prompt_tokens", BigInteger, nullable=False, default=0),
        Column("completion_tokens", BigInteger, nullable=False, default=0),
        Column("total_ms", Float, nullable=False, default=0),
    )


usage_daily = _usage_totals("usage_daily", "day", 10)  # the relay's time zone, like usage.day
usage_hourly = _usage_totals("usage_hourly", "hour", 13)  # "YYYY-MM-DD HH", UTC

# -- native upstreams (issue 12, migration 0005) -------------------------------

channel_keys = Table(  # a channel's API keys, used round-robin; channels.api_key_enc mirrors the first
    "channel_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("channel_id", Integer, ForeignKey("channels.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),  # 0-based order; shown 1-based (#1, #2, …)
    Column("key_enc", Text, nullable=False),  # Fernet token, never the key itself
    Column("retired_reason", Text),  # why the upstream refused it; NULL = in use
    Column("retired_at", DateTime(timezone=True)),
    UniqueConstraint("channel_id", "position", name="uq_channel_keys_position"),
)
