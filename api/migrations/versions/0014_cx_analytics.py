"""CX analytics: indexes for the dashboard's windowed KPI queries

Revision ID: 0014_cx_analytics
Revises: 0007_staff (depends on 0002_knowledge, 0003_safety)

Each dashboard panel filters one table by a time window (and groups by day, channel or
product); these indexes let PostgreSQL read only the window. ``benchmarks/analytics.py`` drops
and recreates exactly these (``INDEXES`` / ``index_ddl``) to measure them.
"""
from __future__ import annotations

from alembic import op

revision = "0014_cx_analytics"
down_revision = "0007_staff"
branch_labels = None
depends_on = ("0002_knowledge", "0003_safety")

# (name, table, columns)
INDEXES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ix_conversation_created_at", "conversation", ("created_at",)),
    ("ix_handoff_created_at", "handoff", ("created_at",)),
    ("ix_service_request_created_at", "service_request", ("created_at",)),
    ("ix_survey_response_kind_answered_at", "survey_response", ("kind", "answered_at")),
    ("ix_medical_inquiry_created_at", "medical_inquiry", ("created_at",)),
)


def index_ddl(dialect: str) -> list[str]:
    return [f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(cols)})" for name, table, cols in INDEXES]


def upgrade() -> None:
    for name, table, cols in INDEXES:
        op.create_index(name, table, list(cols))


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
