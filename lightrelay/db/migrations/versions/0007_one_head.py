"""one head: joins the three branches that grew from 0003 (0004 api surface, 0005 native upstreams,
0006 business), so the next migration has one parent and ``alembic upgrade head`` works. No schema change.

Revision ID: 0007
Revises: 0004, 0005, 0006
"""

revision = "0007"
down_revision = ("0004", "0005", "0006")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
