"""message.sender_label: who spoke, as the HCP sees it ("Medical Information · MI-2026-000042",
"Sam Rivera · your representative"); set when staff send, empty for the bot and the HCP

Revision ID: 0021_sender_label
Revises: 0064_staff_snippets

A plain ADD COLUMN (nullable): messages sent before it are labelled by their sender type.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_sender_label"
down_revision = "0064_staff_snippets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("message", sa.Column("sender_label", sa.String(length=160), nullable=True))


def downgrade() -> None:
    op.drop_column("message", "sender_label")
