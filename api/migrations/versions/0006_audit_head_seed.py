"""seed the audit chain head so concurrent first writers never race to create it

Revision ID: 0006_audit_head_seed
Revises: 0001_skeleton
"""
from __future__ import annotations

from alembic import op

revision = "0006_audit_head_seed"
down_revision = "0001_skeleton"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.execute(
        "INSERT INTO audit_head (id, seq, last_hash) "
        f"SELECT 1, 0, '{GENESIS}' WHERE NOT EXISTS (SELECT 1 FROM audit_head WHERE id = 1)"
    )


def downgrade() -> None:
    op.execute("DELETE FROM audit_head WHERE id = 1 AND seq = 0")
