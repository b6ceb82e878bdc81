"""What share of each written output shows a person ("no person found" items).

``job_items.person_share``: the share (0-1) of the output's pixels whose final
person probability is >= 0.5 (``unetbg.removal.presence``); ``NULL`` for items not
written, and for items recorded before this revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot alter a table in place (it is rebuilt), PostgreSQL can.
    with op.batch_alter_table("job_items") as batch_op:
        batch_op.add_column(sa.Column("person_share", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_items") as batch_op:
        batch_op.drop_column("person_share")
