"""whatsapp: raw inbound webhooks, stored before the ack and ingested by the worker

Revision ID: 0015_whatsapp_inbound
Revises: 0005_whatsapp
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0015_whatsapp_inbound"
down_revision = "0005_whatsapp"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "whatsapp_inbound",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_sid", sa.String(length=64), nullable=False),
        sa.Column("from_address", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("opt_out", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", api.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_inbound")),
        sa.UniqueConstraint("message_sid", name=op.f("uq_whatsapp_inbound_message_sid")),
    )
    op.create_index(op.f("ix_whatsapp_inbound_from_address"), "whatsapp_inbound", ["from_address"])
    op.create_index(op.f("ix_whatsapp_inbound_status"), "whatsapp_inbound", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_whatsapp_inbound_status"), table_name="whatsapp_inbound")
    op.drop_index(op.f("ix_whatsapp_inbound_from_address"), table_name="whatsapp_inbound")
    op.drop_table("whatsapp_inbound")
