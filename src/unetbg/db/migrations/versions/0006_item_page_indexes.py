"""Indexes for paged item lists: ``(job_id, id)`` and ``(job_id, state, id)``.

``GET /api/jobs/{id}/items`` and ``unetbg status JOB --items`` read a job's items a page
at a time, by id after a cursor (``jobs.queries.item_page``). With these each page is
one index range in id order; before, PostgreSQL sorted all of a job's items (or all its
failed ones) for every page. They replace ``(job_id)`` and ``(job_id, state)``, which
are their prefixes, so recording an item updates no more indexes than before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_job_items_job_id_id", "job_items", ["job_id", "id"])
    op.create_index("ix_job_items_job_state_id", "job_items", ["job_id", "state", "id"])
    op.drop_index("ix_job_items_job_state", table_name="job_items")
    op.drop_index("ix_job_items_job_id", table_name="job_items")


def downgrade() -> None:
    op.create_index("ix_job_items_job_id", "job_items", ["job_id"])
    op.create_index("ix_job_items_job_state", "job_items", ["job_id", "state"])
    op.drop_index("ix_job_items_job_state_id", table_name="job_items")
    op.drop_index("ix_job_items_job_id_id", table_name="job_items")
