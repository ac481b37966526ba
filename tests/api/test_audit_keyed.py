"""The audit chain is keyed, and anchored outside the database by signed checkpoints.

Somebody with write access to the database (triggers dropped, every hash and the head recomputed)
can no longer make ``concierge audit verify`` pass: without the key the HMACs do not hold, rows
rewritten as "unkeyed" contradict the keyed ones or the last checkpoint. ``verify`` also tells a
database it could not read (exit 3) from a chain that is broken (exit 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.audit import service as audit
from api.audit.checkpoint import Checkpoint
from api.cli import main
from api.db import make_engine, make_session_factory, unit_of_work
from tests.fakes.rasa import FakeRasa


@pytest.fixture()
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    previous = audit.current_key()
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", url)
    monkeypatch.setenv("CONCIERGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONCIERGE_AUDIT_KEY", "the-real-key")
    monkeypatch.setenv("CONCIERGE_AUDIT_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    assert main(["db", "upgrade"]) == 0
    engine = make_engine(url)
    audit.configure(b"the-real-key")
    with unit_of_work(make_session_factory(engine)) as s:
        for i in range(6):
            audit.record(s, action="keyed.test", subject_type="test", subject_id=str(i), data={"i": i})
    yield engine
    engine.dispose()
    audit.configure(previous)  # the rest of the suite signs with the suite's key


def _rewrite(engine: Engine, *, key: bytes | None, from_seq: int = 1, key_id: str | None = None,
             change: dict[int, str] | None = None) -> None:
    """What an attacker with database write access does: change rows, recompute every hash and the head."""
    change = change or {}
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER IF EXISTS audit_event_no_update"))
        rows = conn.execute(text("SELECT seq, at, actor_type, actor_id, action, subject_type, subject_id, data, "
                                 "prev_hash FROM audit_event ORDER BY seq")).all()
        prev = audit.GENESIS
        for seq, at, actor_type, actor_id, action, subject_type, subject_id, data, _prev_hash in rows:
            if seq < from_seq:
                prev = conn.execute(text("SELECT hash FROM audit_event WHERE seq = :s"), {"s": seq}).scalar_one()
                continue
            subject_id = change.get(seq, subject_id)
            when = datetime.fromisoformat(str(at)).replace(tzinfo=UTC)
            digest = audit._digest(key, prev, seq, when, actor_type, actor_id, action,
                                   subject_type, subject_id, json.loads(data) if isinstance(data, str) else data)
            conn.execute(text("UPDATE audit_event SET subject_id = :sid, prev_hash = :p, hash = :h, key_id = :k "
                              "WHERE seq = :s"), {"sid": subject_id, "p": prev, "h": digest, "k": key_id, "s": seq})
            prev = digest
        conn.execute(text("UPDATE audit_head SET last_hash = :h WHERE id = 1"), {"h": prev})


def test_records_carry_the_id_of_the_key_that_signed_them(cli_db: Engine) -> None:
    with cli_db.connect() as conn:
        ids = {r[0] for r in conn.execute(text("SELECT key_id FROM audit_event"))}
    assert ids == {audit.key_id(b"the-real-key")}
    assert "the-real-key" not in next(iter(ids))


def test_a_chain_recomputed_without_the_key_fails_verification(
        cli_db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    _rewrite(cli_db, key=b"a-guessed-key", key_id=audit.key_id(b"the-real-key"), change={3: "forged"})
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at seq 1: content changed" in capsys.readouterr().err


def test_a_chain_rewritten_as_unkeyed_records_contradicts_the_keyed_ones(
        cli_db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    _rewrite(cli_db, key=None, from_seq=4, change={5: "forged"})
    assert main(["audit", "verify"]) == 1
    assert "an unkeyed record after keyed ones" in capsys.readouterr().err


def test_a_whole_chain_rewritten_as_unkeyed_is_caught_by_the_last_checkpoint(
        cli_db: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["audit", "checkpoint"]) == 0
    written = sorted((tmp_path / "checkpoints").glob("checkpoint-*.json"))
    assert len(written) == 1 and not os.stat(written[0]).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert main(["audit", "verify"]) == 0
    assert "matches checkpoint" in capsys.readouterr().out
    _rewrite(cli_db, key=None, change={2: "forged"})        # self-consistent, and plain SHA-256 throughout
    assert main(["audit", "verify"]) == 1
    assert "differs from the checkpoint" in capsys.readouterr().err


def test_an_edited_checkpoint_is_itself_reported(cli_db: Engine, capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    assert main(["audit", "checkpoint"]) == 0
    path = next((tmp_path / "checkpoints").glob("checkpoint-*.json"))
    raw = json.loads(path.read_text())
    os.chmod(path, 0o644)
    path.write_text(json.dumps({**raw, "hash": hashlib.sha256(b"x").hexdigest()}))
    assert main(["audit", "verify"]) == 1
    assert "checkpoint TAMPERED" in capsys.readouterr().err


def test_a_checkpoint_is_only_signed_for_an_intact_chain(cli_db: Engine, tmp_path: Path) -> None:
    _rewrite(cli_db, key=b"a-guessed-key", key_id=audit.key_id(b"the-real-key"))
    assert main(["audit", "checkpoint"]) == 1
    assert not list((tmp_path / "checkpoints").glob("*.json"))


def test_a_busy_database_is_its_own_exit_code_not_tampering(
        cli_db: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The driver's answer when the database is locked by another writer or unreachable.
    monkeypatch.setattr("api.audit.service.verify", _locked_verify)
    assert main(["audit", "verify"]) == 3
    assert "NOT CHECKED" in capsys.readouterr().err


def _locked_verify(session: object, key: bytes | None = None) -> object:
    from sqlalchemy.exc import OperationalError

    raise OperationalError("SELECT ... FROM audit_event", {}, Exception("database is locked"))


def test_checkpoint_signatures_name_the_key_and_change_with_any_field() -> None:
    cp = Checkpoint(seq=4, hash="ab" * 32, key_id=audit.key_id(b"k"), taken_at="2026-12-06T00:00:00+00:00")
    assert cp.signature(b"k") != cp.signature(b"other")
    assert cp.signature(b"k") != Checkpoint(5, cp.hash, cp.key_id, cp.taken_at).signature(b"k")


def test_the_app_writes_checkpoints_of_the_chain_on_its_own(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    directory = tmp_path / "app-checkpoints"
    client = make_client(FakeRasa(), audit_checkpoint_interval_s=0.2, audit_checkpoint_dir=directory)
    client.post("/api/webchat/sessions")          # at least one audit record in the chain
    deadline = time.monotonic() + 60  # a loaded machine: the periodic job's thread may wait for a core
    while not list(directory.glob("checkpoint-*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = list(directory.glob("checkpoint-*.json"))
    assert found, "no checkpoint written"
    assert json.loads(found[0].read_text())["key_id"] == audit.key_id(audit.current_key())
