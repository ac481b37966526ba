"""GDPR erasure: hcp.erased_at; consent and preference history may be pseudonymised (only that)

Revision ID: 0012_gdpr_erasure
Revises: 0007_staff (depends on 0003_safety, 0004_conversation)

Both histories stay append-only: no DELETE, and the only UPDATE allowed is the one
``concierge hcp erase`` makes — consent: the address becomes an ``erased:…`` pseudonym;
preference_change: subject ``erased:…`` and the values ``[erased]`` — every other column unchanged.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db

revision = "0012_gdpr_erasure"
down_revision = "0007_staff"
branch_labels = None
depends_on = ("0003_safety", "0004_conversation")

# table → (the pseudonymising condition on NEW, columns that must not change, nullable ones among them)
GUARDED = {
    "consent": ("NEW.address LIKE 'erased:%'",
                ("id", "channel", "purpose", "action", "source", "at", "hcp_id", "message_id")),
    "preference_change": ("NEW.subject LIKE 'erased:%' AND NEW.new_value = '[erased]' "
                          "AND (NEW.old_value IS NULL OR NEW.old_value = '[erased]')",
                          ("id", "hcp_id", "conversation_id", "name", "actor_type", "actor_id", "source",
                           "message_id", "at")),
}


def _condition(table: str, dialect: str) -> str:
    erased, same = GUARDED[table]
    op_ = "IS" if dialect == "sqlite" else "IS NOT DISTINCT FROM"
    return erased + "".join(f" AND NEW.{c} {op_} OLD.{c}" for c in same)


def upgrade() -> None:
    with op.batch_alter_table("hcp", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", api.db.UTCDateTime(timezone=True), nullable=True))
    dialect = op.get_bind().dialect.name
    for table in GUARDED:
        if dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                       f"WHEN NOT ({_condition(table, dialect)}) "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
        elif dialect == "postgresql":
            op.execute(f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$ BEGIN "
                       f"IF TG_OP = 'UPDATE' AND {_condition(table, dialect)} THEN RETURN NEW; END IF; "
                       f"RAISE EXCEPTION '{table} is append-only'; END; $$ LANGUAGE plpgsql")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in GUARDED:
        if dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
        elif dialect == "postgresql":
            op.execute(f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$ "
                       f"BEGIN RAISE EXCEPTION '{table} is append-only'; END; $$ LANGUAGE plpgsql")
    with op.batch_alter_table("hcp", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
