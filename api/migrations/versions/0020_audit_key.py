"""audit_event.key_id: the chain is keyed (HMAC under a key kept outside the database)

Revision ID: 0020_audit_key
Revises: 0001_skeleton

A plain ADD COLUMN (no table copy on SQLite): the append-only triggers stay as they are.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_audit_key"
down_revision = "0001_skeleton"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_event", sa.Column("key_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_event", "key_id")
