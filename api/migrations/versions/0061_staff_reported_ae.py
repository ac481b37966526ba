"""adverse_event.source and reported_by_staff_id: a case opened from staff free text

Revision ID: 0061_staff_reported_ae
Revises: 0021_sender_label
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0061_staff_reported_ae"
down_revision = "0021_sender_label"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing cases came from HCP messages; a staff mention is reported by the staff member.
    op.add_column("adverse_event", sa.Column("source", sa.String(length=16), nullable=False, server_default="hcp"))
    op.add_column("adverse_event", sa.Column("reported_by_staff_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35 too): a batch rebuild would lose adverse_event's no-delete trigger.
    op.drop_column("adverse_event", "reported_by_staff_id")
    op.drop_column("adverse_event", "source")
