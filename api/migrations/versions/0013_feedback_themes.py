"""feedback theme runs: themes with terms, per-day counts and sentiment, redacted example quotes

Revision ID: 0013_feedback_themes
Revises: 0007_staff
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0013_feedback_themes"
down_revision = "0007_staff"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_theme_run",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("since", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("until", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=40), nullable=False),
        sa.Column("embedder", sa.String(length=64), nullable=False),
        sa.Column("comments", sa.Integer(), nullable=False),
        sa.Column("ratings", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_theme_run")),
    )
    op.create_index(op.f("ix_feedback_theme_run_created_at"), "feedback_theme_run", ["created_at"], unique=False)
    op.create_table(
        "feedback_theme",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("first_class", sa.Boolean(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sentiment", sa.Float(), nullable=False),
        sa.Column("trend", sa.JSON(), nullable=False),
        sa.Column("examples", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["feedback_theme_run.id"],
                                name=op.f("fk_feedback_theme_run_id_feedback_theme_run"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_theme")),
    )
    op.create_index(op.f("ix_feedback_theme_run_id"), "feedback_theme", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_feedback_theme_run_id"), table_name="feedback_theme")
    op.drop_table("feedback_theme")
    op.drop_index(op.f("ix_feedback_theme_run_created_at"), table_name="feedback_theme_run")
    op.drop_table("feedback_theme_run")
