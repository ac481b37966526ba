"""Database errors never carry statement parameters (message text, names, numbers) into logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from api.db import make_engine


def test_a_failed_statement_does_not_show_its_parameters(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (phone TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES (:p)"), {"p": "+447700900777"})
    with pytest.raises(IntegrityError) as failed, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:p)"), {"p": "+447700900777"})
    assert "+447700900777" not in str(failed.value)
    engine.dispose()
