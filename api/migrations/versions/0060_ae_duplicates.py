"""adverse_event_duplicate: possible duplicate cases, confirmed or rejected by a safety reviewer

Revision ID: 0060_ae_duplicates
Revises: 0020_audit_key
Depends on: 0017_ae_assignee (the adverse_event table must exist first)
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db
from api.migrations.guards import append_only, drop_append_only

revision = "0060_ae_duplicates"
down_revision = "0020_audit_key"
branch_labels = None
depends_on = "0017_ae_assignee"


def upgrade() -> None:
    op.create_table(
        "adverse_event_duplicate",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("case_id", sa.String(length=32), sa.ForeignKey("adverse_event.id"), nullable=False),
        sa.Column("candidate_id", sa.String(length=32), sa.ForeignKey("adverse_event.id"), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("decided_at", api.db.UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("case_id", "candidate_id", name="uq_adverse_event_duplicate_case_id"),
    )
    op.create_index("ix_adverse_event_duplicate_case_id", "adverse_event_duplicate", ["case_id"])
    op.create_index("ix_adverse_event_duplicate_candidate_id", "adverse_event_duplicate", ["candidate_id"])
    op.create_index("ix_adverse_event_duplicate_status", "adverse_event_duplicate", ["status"])
    # A link is decided, never deleted: the decision history is evidence like the cases.
    append_only("adverse_event_duplicate", allow_update=True)


def downgrade() -> None:
    drop_append_only("adverse_event_duplicate", allow_update=True)
    op.drop_index("ix_adverse_event_duplicate_status", table_name="adverse_event_duplicate")
    op.drop_index("ix_adverse_event_duplicate_candidate_id", table_name="adverse_event_duplicate")
    op.drop_index("ix_adverse_event_duplicate_case_id", table_name="adverse_event_duplicate")
    op.drop_table("adverse_event_duplicate")
