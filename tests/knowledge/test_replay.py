"""Library-change impact replay: recent questions decided against a new library file, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.clock import utcnow
from knowledge.embedding import NumpyVectorIndex
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase
from knowledge.library import parse_library
from knowledge.models import Answer
from knowledge.replay import replay
from knowledge.service import Recipient, answer_question, load_library
from tests.knowledge.conftest import TODAY, small_items

WriteLibrary = Callable[..., Path]


def test_replay_counts_answers_and_lists_every_changed_question(
        session: Session, write_library: WriteLibrary, fake_kb: KnowledgeBase, tmp_path: Path) -> None:
    load_library(session, write_library(small_items()))
    hcp = Recipient("US", "hcp", True)
    since = utcnow() - timedelta(microseconds=1)
    new_items: list[dict[str, Any]] = small_items()
    new_items[2]["status"] = "withdrawn"   # the injection item leaves the new library
    other = KnowledgeBase(tmp_path / "new-index", embedder=fake_kb.embedder, index_factory=NumpyVectorIndex,
                          policy=fake_kb.policy)
    lkb = LibraryKnowledgeBase(parse_library(write_library(new_items, "new.jsonl")), other)
    # The test database is shared: answers other tests stored (some on a clock ahead of ours) are in
    # the window too, so this test counts what its own three questions add.
    baseline = replay(session, lkb, since=since, today=TODAY)
    asked = ["How is Respizan injected?", "What is the recommended dose of Cardiovex?",
             "reserve a taxi to the station"]
    before = [answer_question(session, fake_kb, q, hcp, today=TODAY) for q in asked]
    assert [d.decision for d in before] == ["answer", "answer", "escalate"]
    rows = session.scalar(select(func.count()).select_from(Answer))

    report = replay(session, lkb, since=since, today=TODAY)

    assert report.questions - baseline.questions == 3
    assert report.answered_before - baseline.answered_before == 2
    assert report.answered + report.escalated == report.questions
    changed = {c.query: (c.before, c.after) for c in report.changed if c not in baseline.changed}
    assert changed["How is Respizan injected?"][0] == "answer:T-003"
    assert changed["How is Respizan injected?"][1] != "answer:T-003"
    assert "What is the recommended dose of Cardiovex?" not in changed      # same answer: not listed
    assert report.as_dict()["changed_count"] == len(report.changed)
    assert session.scalar(select(func.count()).select_from(Answer)) == rows  # replay writes nothing


def test_replay_cli_rejects_a_bad_library_and_a_bad_window(
        write_library: WriteLibrary, monkeypatch: Any, tmp_path: Path, capsys: Any) -> None:
    from api.cli import main

    monkeypatch.setenv("CONCIERGE_DATABASE_URL", f"sqlite:///{tmp_path / 'r.db'}")
    monkeypatch.setenv("CONCIERGE_VAR_DIR", str(tmp_path / "var"))
    bad = write_library([{"id": "only-an-id"}], "bad.jsonl")
    assert main(["knowledge", "replay", "--library", str(bad)]) == 1
    assert main(["knowledge", "replay", "--library", str(bad), "--days", "0"]) == 2
    assert "--days" in capsys.readouterr().err
