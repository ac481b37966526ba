"""service-request console: who closed a request and why, staff notes; WhatsApp verification intake

Revision ID: 0015_request_console
Revises: 0007_staff (depends on 0004_conversation)

``completed`` requests become ``resolved`` (the console's word; ``cannot_fulfil`` is the other
way a request closes).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0015_request_console"
down_revision = "0007_staff"
branch_labels = None
depends_on = "0004_conversation"


def upgrade() -> None:
    with op.batch_alter_table("service_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_at", api.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("outcome_reason", sa.Text(), nullable=True))
        batch_op.create_foreign_key(op.f("fk_service_request_closed_by_staff_user"), "staff_user",
                                    ["closed_by"], ["id"])
    op.execute("UPDATE service_request SET status = 'resolved' WHERE status = 'completed'")
    op.create_table(
        "service_request_note",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("service_request_id", sa.String(length=32), nullable=False),
        sa.Column("staff_id", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["service_request_id"], ["service_request.id"],
                                name=op.f("fk_service_request_note_service_request_id_service_request")),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_user.id"],
                                name=op.f("fk_service_request_note_staff_id_staff_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_request_note")),
    )
    op.create_index(op.f("ix_service_request_note_service_request_id"), "service_request_note",
                    ["service_request_id"], unique=False)
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verification_intake", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_column("verification_intake")
    op.drop_index(op.f("ix_service_request_note_service_request_id"), table_name="service_request_note")
    op.drop_table("service_request_note")
    op.execute("UPDATE service_request SET status = 'completed' WHERE status = 'resolved'")
    with op.batch_alter_table("service_request", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_service_request_closed_by_staff_user"), type_="foreignkey")
        batch_op.drop_column("outcome_reason")
        batch_op.drop_column("closed_by")
        batch_op.drop_column("updated_at")
