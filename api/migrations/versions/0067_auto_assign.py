"""Auto-assignment: staff presence, capacity, languages and markets; offers on handoffs and their history

Revision ID: 0067_auto_assign
Revises: 0060_ae_duplicates
Depends on: 0007_staff
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0067_auto_assign"
down_revision = "0060_ae_duplicates"
branch_labels = None
depends_on = "0007_staff"  # staff_user and handoff must exist first


def upgrade() -> None:
    with op.batch_alter_table("staff_user") as batch:
        # Everyone starts offline: nobody is offered work until they say they are at their desk.
        batch.add_column(sa.Column("presence", sa.String(length=16), nullable=False, server_default="offline"))
        batch.add_column(sa.Column("max_open", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("languages", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("markets", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("last_offered_at", api.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("handoff") as batch:
        batch.add_column(sa.Column("language", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("market", sa.String(length=2), nullable=True))
        batch.add_column(sa.Column("offered_to", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("offered_at", api.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("offer_expires_at", api.db.UTCDateTime(timezone=True), nullable=True))
        batch.create_index("ix_handoff_offered_to", ["offered_to"])
    op.create_table(
        "handoff_offer",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("handoff_id", sa.String(length=32), sa.ForeignKey("handoff.id"), nullable=False),
        sa.Column("staff_id", sa.String(length=32), nullable=False),
        sa.Column("offered_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("decided_at", api.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_handoff_offer_handoff_id", "handoff_offer", ["handoff_id"])
    op.create_index("ix_handoff_offer_staff_id", "handoff_offer", ["staff_id"])


def downgrade() -> None:
    op.drop_index("ix_handoff_offer_staff_id", table_name="handoff_offer")
    op.drop_index("ix_handoff_offer_handoff_id", table_name="handoff_offer")
    op.drop_table("handoff_offer")
    with op.batch_alter_table("handoff") as batch:
        batch.drop_index("ix_handoff_offered_to")
        for name in ("offer_expires_at", "offered_at", "offered_to", "market", "language"):
            batch.drop_column(name)
    with op.batch_alter_table("staff_user") as batch:
        for name in ("last_offered_at", "markets", "languages", "max_open", "presence"):
            batch.drop_column(name)
