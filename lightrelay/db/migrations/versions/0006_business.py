"""business: redemption codes, extra-call balances, invites, per-token limits, model weights

Revision ID: 0006
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("extra_calls", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("extra_image_calls", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("invite_code", sa.String(32), nullable=True))
        batch.add_column(sa.Column("invited_by", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_accounts_invite_code", ["invite_code"])
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("models", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ips", sa.Text(), nullable=True))
        batch.add_column(sa.Column("rpm", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("daily_limit", sa.Integer(), nullable=True))
    op.create_table(
        "redeem_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("masked", sa.String(32), nullable=False),
        sa.Column("batch", sa.String(32), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("image_calls", sa.Integer(), nullable=False),
        sa.Column("gpt4", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.String(200), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    op.create_index("ix_redeem_codes_batch", "redeem_codes", ["batch"])
    op.create_table(
        "token_counts",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["tokens.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_id", "day"),
        sqlite_with_rowid=False,  # one B-tree page per write, not a table page and an index page
    )
    op.create_table(
        "model_weights",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )
    for name, period, size in (("usage_daily", "day", 10), ("usage_hourly", "hour", 13)):
        op.create_table(
            name,
            sa.Column(period, sa.String(size), nullable=False),
            sa.Column("account_id", sa.Integer(), nullable=False),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("channel", sa.String(100), nullable=False),
            sa.Column("door", sa.String(10), nullable=False),
            sa.Column("calls", sa.Integer(), nullable=False),
            sa.Column("charged", sa.Integer(), nullable=False),
            sa.Column("errors", sa.Integer(), nullable=False),
            sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
            sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
            sa.Column("total_ms", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint(period, "account_id", "model", "channel", "door"),
        )
    # the rows already written count too
    hour = ("to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')" if op.get_bind().dialect.name == "postgresql"
            else "substr(created_at, 1, 13)")
    for name, period, key in (("usage_daily", "day", "day"), ("usage_hourly", "hour", hour)):
        op.execute(
            f"INSERT INTO {name} ({period}, account_id, model, channel, door, calls, charged, errors, prompt_tokens, "
            f"completion_tokens, total_ms) SELECT {key}, coalesce(account_id, 0), model, coalesce(channel, ''), door, "
            "count(*), sum(CASE WHEN charged THEN 1 ELSE 0 END), sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END), "
            f"sum(prompt_tokens), sum(completion_tokens), sum(total_ms) FROM usage GROUP BY {key}, "
            "coalesce(account_id, 0), model, coalesce(channel, ''), door")
    with op.batch_alter_table("usage") as batch:
        batch.create_index("ix_usage_created", ["created_at"])
        batch.create_index("ix_usage_token_id", ["token_id", "id"])
        batch.create_index("ix_usage_model_id", ["model", "id"])


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        for name in ("ix_usage_model_id", "ix_usage_token_id", "ix_usage_created"):
            batch.drop_index(name)
    op.drop_table("usage_hourly")
    op.drop_table("usage_daily")
    op.drop_table("model_weights")
    op.drop_table("token_counts")
    op.drop_index("ix_redeem_codes_batch", table_name="redeem_codes")
    op.drop_table("redeem_codes")
    with op.batch_alter_table("tokens") as batch:
        for name in ("daily_limit", "rpm", "ips", "expires_at", "models"):
            batch.drop_column(name)
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint("uq_accounts_invite_code", type_="unique")
        for name in ("invited_by", "invite_code", "extra_image_calls", "extra_calls"):
            batch.drop_column(name)
