"""sla_alert: overdue handoffs / service requests and adverse-event deadlines, raised once and delivered

Revision ID: 0018_sla_alerts
Revises: 0007_staff
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0018_sla_alerts"
down_revision = "0007_staff"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sla_alert",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_type", sa.String(length=24), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=24), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("team", sa.String(length=32), nullable=False),
        sa.Column("due_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", api.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_until", api.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_alert")),
        sa.UniqueConstraint("subject_type", "subject_id", "kind", "due_at", name="uq_sla_alert_breach"),
    )
    op.create_index(op.f("ix_sla_alert_subject_id"), "sla_alert", ["subject_id"], unique=False)
    op.create_index(op.f("ix_sla_alert_delivered_at"), "sla_alert", ["delivered_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sla_alert_delivered_at"), table_name="sla_alert")
    op.drop_index(op.f("ix_sla_alert_subject_id"), table_name="sla_alert")
    op.drop_table("sla_alert")
