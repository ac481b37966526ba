"""The core command line: db upgrade, audit verify, bot hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from api.audit import service as audit
from api.cli import main
from api.db import make_engine, make_session_factory, unit_of_work


@pytest.fixture()
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", url)
    monkeypatch.setenv("CONCIERGE_VAR_DIR", str(tmp_path / "var"))
    return url


def test_db_upgrade_creates_the_schema_and_is_idempotent(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "upgrade"]) == 0
    engine = make_engine(db_env)
    with engine.connect() as conn:
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
    engine.dispose()
    assert {"conversation", "message", "inbox", "outbox", "audit_event", "handoff"} <= tables
    assert "database at heads" in capsys.readouterr().out


def test_audit_verify_passes_on_an_intact_chain_and_fails_on_a_tampered_one(
    db_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["db", "upgrade"])
    engine = make_engine(db_env)
    with unit_of_work(make_session_factory(engine)) as s:
        for i in range(5):
            audit.record(s, action="cli.test", subject_type="test", subject_id=str(i), data={"i": i})
    assert main(["audit", "verify"]) == 0
    assert "intact: 5 events" in capsys.readouterr().out
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_event_no_update"))
        conn.execute(text("UPDATE audit_event SET subject_id = 'x' WHERE seq = 3"))
    engine.dispose()
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at seq 3" in capsys.readouterr().err


def test_bot_hash_changes_only_with_training_sources(tmp_path: Path) -> None:
    from api.rasa.process import model_hash

    root = tmp_path / "proj"
    (root / "bot" / "domain").mkdir(parents=True)
    (root / "bot" / "data").mkdir(parents=True)
    (root / "bot" / "tests").mkdir(parents=True)
    (root / "config.yml").write_text("recipe: default.v1\n")
    (root / "bot" / "domain" / "core.yml").write_text("version: '3.1'\n")
    first = model_hash(root)
    (root / "bot" / "tests" / "t.yml").write_text("stories: []\n")
    assert model_hash(root) == first  # test stories do not change the model
    (root / "bot" / "data" / "nlu.yml").write_text("nlu: []\n")
    assert model_hash(root) != first
    second = model_hash(root)
    (root / "config.yml").write_text("recipe: default.v1\nlanguage: en\n")
    assert model_hash(root) != second
    third = model_hash(root)
    # The custom NLU components are trained into the model too; Python's bytecode caches are not.
    components = root / "bot" / "components" / "concierge_nlu"
    components.mkdir(parents=True)
    (components / "featurizer.py").write_text("SCALE = 1\n")
    assert model_hash(root) != third
    fourth = model_hash(root)
    (components / "__pycache__").mkdir()
    (components / "__pycache__" / "featurizer.cpython-310.pyc").write_bytes(b"\x00\x01")
    assert model_hash(root) == fourth
