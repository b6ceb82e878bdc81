"""Task ids that are never reused, and bounded redos of lost images.

``jobs.send_round``: how many times the job's unfinished work was sent again (retry,
resume, work of a dead worker); the task ids of a later round carry it, so an id a
cancel revoked is never sent again. ``job_items.attempts``: how many times a worker
claimed the image; a lost image is sent again only while it is below the bound.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot alter a table in place (it is rebuilt), PostgreSQL can.
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(
            sa.Column("send_round", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("job_items") as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("job_items") as batch_op:
        batch_op.drop_column("attempts")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("send_round")
