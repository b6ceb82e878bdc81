"""A remove-dir job's item counts by state as columns of the job, and the count of
outputs that existed when it was recorded (issue 23).

Every status call, poll and finished chunk counted all of a job's items by state
(72 ms at a million items); the counters are kept up to date in the transactions that
move items (``jobs.records.shift_counts``). Existing jobs get them from their items.
A re-run no longer records a ``skipped`` row per existing output: ``outputs_skipped``
counts them (existing rows stay as they are, counted in ``items_skipped``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
#: ``removal.presence.NO_PERSON_SHARE`` when this revision was written.
NO_PERSON_SHARE = 0.001
COLUMNS = [f"items_{state}" for state in STATES] + ["items_no_person", "outputs_skipped"]


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    counts = {f"items_{state}": f"job_items.state = '{state}'" for state in STATES} | {
        "items_no_person": (
            f"job_items.state = 'succeeded' AND job_items.person_share < {NO_PERSON_SHARE}"
        )
    }
    for column, condition in counts.items():
        op.execute(
            f"UPDATE jobs SET {column} = (SELECT count(*) FROM job_items "
            f"WHERE job_items.job_id = jobs.id AND {condition})"
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
