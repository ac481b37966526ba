"""staff_note: staff-typed reasons and notes, referenced (id + SHA-256) from the audit chain

Revision ID: 0016_staff_notes
Revises: 0007_staff
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0016_staff_notes"
down_revision = "0007_staff"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_note",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_type", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_note")),
    )
    op.create_index(op.f("ix_staff_note_subject_id"), "staff_note", ["subject_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_staff_note_subject_id"), table_name="staff_note")
    op.drop_table("staff_note")
