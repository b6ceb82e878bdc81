"""Record which chunk attempt claimed each remove-dir item (``job_items.claimed_by``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot alter a table in place (it is rebuilt), PostgreSQL can.
    with op.batch_alter_table("job_items") as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_items") as batch_op:
        batch_op.drop_column("claimed_by")
