"""conversation_lease: the process that runs a conversation's turns, until a database-time expiry

Revision ID: 0030_conversation_lease
Revises: 0021_sender_label

A new table only (no change to existing rows). Used on PostgreSQL, where several api and worker
processes share the conversations (api/pipeline/lease.py); SQLite keeps one process per database
and never writes it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.db import UTCDateTime

revision = "0030_conversation_lease"
down_revision = "0021_sender_label"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_lease",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_conversation_lease")),
    )
    op.create_index(op.f("ix_conversation_lease_holder"), "conversation_lease", ["holder"])
    op.create_index(op.f("ix_conversation_lease_expires_at"), "conversation_lease", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_conversation_lease_expires_at"), table_name="conversation_lease")
    op.drop_index(op.f("ix_conversation_lease_holder"), table_name="conversation_lease")
    op.drop_table("conversation_lease")
