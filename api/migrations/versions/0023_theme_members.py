"""feedback_theme.members: the comment / not-helpful rating ids that formed a theme, so the CX
dashboard can drill down from a theme to its conversations

Revision ID: 0023_theme_members
Revises: 0013_feedback_themes

A plain nullable ADD COLUMN: runs made before it have no members (their themes are not drillable).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_theme_members"
down_revision = "0013_feedback_themes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("feedback_theme", sa.Column("members", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("feedback_theme", "members")
