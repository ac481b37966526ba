"""CX rollups: daily counts per (day, channel, product), rolled-up/dirty days, conversation → product

Revision ID: 0015_cx_rollups
Revises: 0014_cx_analytics

Counts, durations in seconds and ids only (no personal data, no free text). ``conversation_product`` is filled here
from the existing answers (one INSERT … SELECT); the daily rows are computed afterwards by the
refresh job (``concierge feedback rollup``, or the app's scheduler): until a day is rolled up
the dashboard computes it live, so the numbers are right straight after the upgrade.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_cx_rollups"
down_revision = "0014_cx_analytics"
branch_labels = None
depends_on = None

COUNT_FIELDS = (
    *(f"csat_{s}" for s in range(1, 6)), *(f"nps_{s}" for s in range(11)),
    "rated", "helpful", "questions", "escalated", "unanswered",
    "conversations", "conv_handoff", "conv_human", "handoffs", "handoffs_claimed",
    "requests", "requests_completed", "requests_open", "requests_sla",
)


def upgrade() -> None:
    op.create_table(
        "cx_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False, server_default="0") for name in COUNT_FIELDS),
        # the day's durations in seconds, sorted (exact medians / p90 over any set of days)
        sa.Column("handoff_secs", sa.JSON(), nullable=True),
        sa.Column("request_secs", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("day", "channel", "product", name="pk_cx_daily"),
    )
    op.create_table(
        "cx_rollup_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_cx_rollup_day"),
    )
    op.create_table(
        "cx_rollup_dirty",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_cx_rollup_dirty"),
    )
    op.create_table(
        "conversation_product",
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "product", name="pk_conversation_product"),
    )
    op.create_index("ix_conversation_product_product", "conversation_product", ["product"])

    answer = sa.table("answer", sa.column("conversation_id", sa.String), sa.column("content_id", sa.String),
                      sa.column("candidates", sa.JSON))
    item = sa.table("content_item", sa.column("id", sa.String), sa.column("product", sa.String))
    pairs = sa.table("conversation_product", sa.column("conversation_id", sa.String), sa.column("product", sa.String))
    content = sa.func.coalesce(answer.c.content_id, answer.c.candidates[0]["content_id"].as_string())
    op.execute(pairs.insert().from_select(
        ["conversation_id", "product"],
        sa.select(answer.c.conversation_id, item.c.product).join(item, item.c.id == content)
        .where(answer.c.conversation_id.is_not(None)).distinct()))


def downgrade() -> None:
    op.drop_index("ix_conversation_product_product", table_name="conversation_product")
    for table in ("conversation_product", "cx_rollup_dirty", "cx_rollup_day", "cx_daily"):
        op.drop_table(table)
