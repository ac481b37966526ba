"""staff_user: must_change_password (an admin-set password is changed at first login) and an invite
link (its token's hash and expiry), so admins never have to hand out passwords

Revision ID: 0022_staff_invites
Revises: 0007_staff
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0022_staff_invites"
down_revision = "0007_staff"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no table copy on SQLite).
    op.add_column("staff_user", sa.Column("must_change_password", sa.Boolean(), nullable=False,
                                          server_default=sa.false()))
    op.add_column("staff_user", sa.Column("invite_token_hash", sa.String(length=64), nullable=True))
    op.add_column("staff_user", sa.Column("invite_expires_at", api.db.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_staff_user_invite_token_hash", "staff_user", ["invite_token_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_staff_user_invite_token_hash", table_name="staff_user")
    op.drop_column("staff_user", "invite_expires_at")
    op.drop_column("staff_user", "invite_token_hash")
    op.drop_column("staff_user", "must_change_password")
