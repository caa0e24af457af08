"""per-channel connect, first-byte and idle timeouts

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("connect_timeout", "first_byte_timeout", "idle_timeout")


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
