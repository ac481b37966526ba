"""Database-level guards shared by migrations: rows that must never change or disappear."""

from __future__ import annotations

from alembic import op


def append_only(table: str, *, allow_update: bool = False) -> None:
    """Refuse DELETE (and UPDATE unless allowed) on ``table`` at the database itself."""
    dialect = op.get_bind().dialect.name
    events = ["DELETE"] if allow_update else ["UPDATE", "DELETE"]
    if dialect == "sqlite":
        for ev in events:
            op.execute(
                f"CREATE TRIGGER {table}_no_{ev.lower()} BEFORE {ev} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$ "
            f"BEGIN RAISE EXCEPTION '{table} is append-only'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE {' OR '.join(events)} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        )


def drop_append_only(table: str, *, allow_update: bool = False) -> None:
    dialect = op.get_bind().dialect.name
    events = ["DELETE"] if allow_update else ["UPDATE", "DELETE"]
    if dialect == "sqlite":
        for ev in events:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{ev.lower()}")
    elif dialect == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
