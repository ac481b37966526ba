"""inbox.screened_at / inbox.screen: the committed outcome of a turn's screening step

Revision ID: 0019_inbox_screen
Revises: 0004_conversation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0019_inbox_screen"
down_revision = "0004_conversation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("screened_at", api.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("screen", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("screen")
        batch.drop_column("screened_at")
