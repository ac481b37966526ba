"""medical review: the answer's message, who closed an inquiry and why

Revision ID: 0010_medical_review
Revises: 0007_staff (depends on 0003_safety)
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_medical_review"
down_revision = "0007_staff"
branch_labels = None
# medical_inquiry is created on the safety branch.
depends_on = "0003_safety"


def upgrade() -> None:
    with op.batch_alter_table("medical_inquiry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("response_message_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("closed_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("close_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("medical_inquiry", schema=None) as batch_op:
        batch_op.drop_column("close_reason")
        batch_op.drop_column("closed_by")
        batch_op.drop_column("response_message_id")
