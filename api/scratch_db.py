"""Throw-away PostgreSQL databases (tests and benchmarks): created on a server, dropped after.

Each run gets its own database, so runs never see each other's rows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, make_url, text


def create_database(server_url: str, prefix: str) -> str:
    """A new empty database ``<prefix>_<random>`` on ``server_url``'s server; returns its URL."""
    url = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(db_url: str) -> None:
    """Drop the database ``db_url`` names, closing its remaining connections."""
    url = make_url(db_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()
