"""staff_snippet: canned staff replies managed by content admins (approved, versioned, expiring)

Revision ID: 0064_staff_snippets
Revises: 0060_ae_duplicates
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0064_staff_snippets"
down_revision = "0060_ae_duplicates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_snippet",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("market", sa.String(length=2), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(length=32), nullable=True),
        sa.Column("approved_at", api.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=32), nullable=True),
        sa.Column("withdrawn_at", api.db.UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("code", "version", name="uq_staff_snippet_code"),
    )
    op.create_index("ix_staff_snippet_code", "staff_snippet", ["code"])
    op.create_index("ix_staff_snippet_status", "staff_snippet", ["status"])


def downgrade() -> None:
    op.drop_index("ix_staff_snippet_status", table_name="staff_snippet")
    op.drop_index("ix_staff_snippet_code", table_name="staff_snippet")
    op.drop_table("staff_snippet")
