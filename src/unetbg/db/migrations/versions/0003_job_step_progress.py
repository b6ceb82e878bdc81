"""A training job's step progress inside its epoch (``jobs.step_progress``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot alter a table in place (it is rebuilt), PostgreSQL can.
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("step_progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("step_progress")
