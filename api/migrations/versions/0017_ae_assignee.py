"""adverse_event.assignee_id / assigned_at: the safety staff member working a case

Revision ID: 0017_ae_assignee
Revises: 0003_safety
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0017_ae_assignee"
down_revision = "0003_safety"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("adverse_event", sa.Column("assignee_id", sa.String(length=32), nullable=True))
    op.add_column("adverse_event", sa.Column("assigned_at", api.db.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_adverse_event_assignee_id", "adverse_event", ["assignee_id"])


def downgrade() -> None:
    op.drop_index("ix_adverse_event_assignee_id", table_name="adverse_event")
    with op.batch_alter_table("adverse_event") as batch:
        batch.drop_column("assigned_at")
        batch.drop_column("assignee_id")
