"""native upstreams: several API keys per channel (each retired with its reason), api_version

Revision ID: 0005
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key_enc", sa.Text(), nullable=False),
        sa.Column("retired_reason", sa.Text(), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel_id", "position", name="uq_channel_keys_position"),
    )
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("api_version", sa.String(length=40), nullable=True))
    # every existing key becomes key #1 of its channel
    op.execute("INSERT INTO channel_keys (channel_id, position, key_enc) "
               "SELECT id, 0, api_key_enc FROM channels WHERE api_key_enc IS NOT NULL AND api_key_enc <> ''")


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("api_version")
    op.drop_table("channel_keys")
