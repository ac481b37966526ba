"""Every command opens the database the same way: ``api.cli.open_sessions(settings)``."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from api.cli import open_sessions
from api.settings import Settings


def test_commands_open_the_configured_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    factory = open_sessions(Settings(database_url=url))
    try:
        with factory() as session:
            assert session.execute(text("select 40 + 2")).scalar_one() == 42
            assert str(session.get_bind().url) == url
    finally:
        factory.kw["bind"].dispose()
