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
from knowledge.replay import library_after_load, replay
from knowledge.service import Recipient, answer_question, load_library
from tests.knowledge.conftest import TODAY, make_item, small_items

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
    assert main(["knowledge", "replay", "--library", str(bad), "--max-questions", "0"]) == 2
    assert "--max-questions" in capsys.readouterr().err


def test_the_library_after_a_load_lays_the_file_over_the_current_versions(
        session: Session, write_library: WriteLibrary) -> None:
    items = small_items()
    items[1]["version"] = 2
    load_library(session, write_library(items))
    partial = [{**items[0], "version": 2, "markets": ["DE"]},    # a new version: replaces the current one
               {**items[1], "version": 1, "body": "Older."},     # older than the current one: skipped
               make_item(id="T-NEW", approval_code="APP-T-NEW")]  # a new item: added
    after = library_after_load(session, parse_library(write_library(partial, "partial.jsonl")))
    by_id = {i.id: i for i in after.items}
    assert {"T-001", "T-002", "T-003", "T-004", "T-NEW"} <= set(by_id)  # items the file leaves out stay
    assert (by_id["T-001"].version, by_id["T-001"].markets) == (2, ("DE",))
    assert by_id["T-002"].version == 2 and by_id["T-003"].body == items[2]["body"]


def test_a_capped_replay_decides_the_most_recent_questions_and_counts_the_rest(
        session: Session, write_library: WriteLibrary, fake_kb: KnowledgeBase) -> None:
    load_library(session, write_library(small_items()))
    hcp = Recipient("US", "hcp", True)
    since = utcnow() - timedelta(microseconds=1)
    for q in ("How should Cardiovex be stored?", "How is Respizan injected?", "What is the dose of Cardiovex?"):
        answer_question(session, fake_kb, q, hcp, today=TODAY)
    lkb = LibraryKnowledgeBase(library_after_load(session, parse_library(write_library(small_items()))), fake_kb)

    full = replay(session, lkb, since=since, today=TODAY)
    capped = replay(session, lkb, since=since, today=TODAY, limit=2)

    assert not full.capped and full.asked == full.questions >= 3
    assert capped.capped and (capped.questions, capped.asked) == (2, full.asked)
    assert capped.as_dict()["capped"] is True
    # An empty window: past every answer any test stores (the suite shares one database, and other tests'
    # clocks run days ahead of the real date, so "tomorrow" was not always empty).
    nobody = replay(session, lkb, since=utcnow() + timedelta(days=36500), today=TODAY)
    assert (nobody.questions, nobody.asked, nobody.changed) == (0, 0, [])


def test_a_question_stamped_after_the_replay_time_is_not_one_of_the_last_days(
        session: Session, write_library: WriteLibrary, fake_kb: KnowledgeBase) -> None:
    """A row from a clock set ahead must neither count nor push real questions out of a capped replay."""
    load_library(session, write_library(small_items()))
    hcp = Recipient("US", "hcp", True)
    since = utcnow() - timedelta(microseconds=1)
    answer_question(session, fake_kb, "Can Cardiovex tablets be split?", hcp, today=TODAY)
    now = utcnow()
    ahead = Answer(query="Is Respizan kept in the fridge?", market="US", audience="hcp", verified=True,
                   decision="escalate", score=0.1, candidates=[], gated_count=0,
                   created_at=now + timedelta(days=2))
    session.add(ahead)
    session.flush()
    lkb = LibraryKnowledgeBase(library_after_load(session, parse_library(write_library(small_items()))), fake_kb)

    bounded = replay(session, lkb, since=since, today=TODAY, limit=1, until=now)
    unbounded = replay(session, lkb, since=since, today=TODAY, limit=1)

    assert not bounded.capped and bounded.asked == bounded.questions
    assert unbounded.asked >= bounded.asked + 1 and unbounded.capped  # others may have left rows ahead too
