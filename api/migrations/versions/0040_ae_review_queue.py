"""ae_review_sample: the blinded AE review queue (flagged messages + a random share of the rest)

Revision ID: 0040_ae_review_queue
Revises: 0017_ae_assignee
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0040_ae_review_queue"
down_revision = "0017_ae_assignee"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ae_review_sample",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("screen_flagged", sa.Boolean(), nullable=False),
        sa.Column("sample_rate", sa.Float(), nullable=False),
        sa.Column("sampled_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=True),
        sa.Column("reviewer_id", sa.String(length=32), nullable=True),
        sa.Column("reviewed_at", api.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], name=op.f("fk_ae_review_sample_message_id_message")),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"],
                                name=op.f("fk_ae_review_sample_conversation_id_conversation")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ae_review_sample")),
        sa.UniqueConstraint("message_id", name=op.f("uq_ae_review_sample_message_id")),
    )
    op.create_index("ix_ae_review_sample_conversation_id", "ae_review_sample", ["conversation_id"])
    op.create_index("ix_ae_review_sample_sampled_at", "ae_review_sample", ["sampled_at"])
    op.create_index("ix_ae_review_sample_label", "ae_review_sample", ["label"])


def downgrade() -> None:
    op.drop_index("ix_ae_review_sample_label", table_name="ae_review_sample")
    op.drop_index("ix_ae_review_sample_sampled_at", table_name="ae_review_sample")
    op.drop_index("ix_ae_review_sample_conversation_id", table_name="ae_review_sample")
    op.drop_table("ae_review_sample")
