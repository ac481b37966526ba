"""staff users, console sessions, login attempts; handoff assignment and contact preference

Revision ID: 0007_staff
Revises: 0004_conversation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0007_staff"
down_revision = "0004_conversation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_user",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("territory", sa.String(length=64), nullable=True),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("created_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", api.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_user")),
        sa.UniqueConstraint("email", name=op.f("uq_staff_user_email")),
    )
    op.create_table(
        "staff_session",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.String(length=32), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", api.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_user.id"], name=op.f("fk_staff_session_staff_id_staff_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_session_token_hash")),
    )
    op.create_index(op.f("ix_staff_session_staff_id"), "staff_session", ["staff_id"], unique=False)
    op.create_table(
        "staff_login_attempt",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("at", api.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_login_attempt")),
    )
    op.create_index(op.f("ix_staff_login_attempt_email"), "staff_login_attempt", ["email"], unique=False)
    op.create_index(op.f("ix_staff_login_attempt_client"), "staff_login_attempt", ["client"], unique=False)
    op.create_index(op.f("ix_staff_login_attempt_at"), "staff_login_attempt", ["at"], unique=False)
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requested_staff_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("contact_preference", sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_handoff_requested_staff_id"), ["requested_staff_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_handoff_requested_staff_id"))
        batch_op.drop_column("contact_preference")
        batch_op.drop_column("requested_staff_id")
    op.drop_table("staff_login_attempt")
    op.drop_table("staff_session")
    op.drop_table("staff_user")
