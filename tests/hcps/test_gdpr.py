"""GDPR: ``concierge hcp export`` gives everything about a person; ``concierge hcp erase`` leaves
nothing of them outside the legal hold — checked by scanning every text/JSON column of every table
in the database (reflected, so tables added later are scanned too) for planted canaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from sqlalchemy import JSON, Column, Engine, MetaData, String, Table, Text, cast, or_, select
from sqlalchemy.orm import Session, sessionmaker

from api.audit import service as audit
from api.audit.models import AuditEvent
from api.cli import main
from api.conversations.models import Message
from api.db import unit_of_work
from api.hcps.models import Hcp
from api.safety.models import AdverseEvent, Consent
from api.staff.notes import StaffNote
from feedback.models import FeedbackComment, PreferenceChange
from tests.conftest import LiveServer, free_port
from tests.hcps.factory import Planted, plant_hcp


@pytest.fixture()
def cli_db(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONCIERGE_RASA_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("CONCIERGE_RASA_TIMEOUT", "1")


@pytest.fixture()
def two_hcps(engine: Engine) -> tuple[Planted, Planted]:
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as session:
        return plant_hcp(session), plant_hcp(session, territory="south")


_TEXT_COLUMNS: dict[str, list[tuple[Table, list[Column[Any]]]]] = {}


def _text_columns(engine: Engine) -> list[tuple[Table, list[Column[Any]]]]:
    """Every table of the database with its text and JSON columns, read from the database itself (once per
    database: the schema is migrated before the first test and never changes; a reflection costs ~0.3 s and
    ``find`` runs some twenty times a test)."""
    key = engine.url.render_as_string(hide_password=False)
    if key not in _TEXT_COLUMNS:
        meta = MetaData()
        meta.reflect(bind=engine)
        _TEXT_COLUMNS[key] = [(table, [c for c in table.columns if isinstance(c.type, String | Text | JSON)])
                              for table in meta.sorted_tables]
    return _TEXT_COLUMNS[key]


def find(engine: Engine, needle: str) -> list[tuple[str, str]]:
    """(table, column) of every text or JSON cell in the database that contains ``needle``."""
    hits: list[tuple[str, str]] = []
    with engine.connect() as conn:
        for table, cols in _text_columns(engine):
            if not cols:
                continue
            for col in cols:
                n = conn.execute(select(col).where(or_(cast(col, Text).contains(needle, autoescape=True)))).all()
                hits += [(table.name, col.name)] * len(n)
    return hits


def test_erasure_leaves_no_canary_outside_the_legal_hold(two_hcps: tuple[Planted, Planted], engine: Engine,
                                                         cli_db: None, capsys: pytest.CaptureFixture[str]) -> None:
    target, other = two_hcps
    for needle in [*target.personal, target.ae_text]:
        assert find(engine, needle), f"the factory did not plant {needle}"

    assert main(["hcp", "erase", target.hcp_id, "--yes", "--actor", "dpo-ticket-42"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["retained_legal_hold"] == {"adverse_event": 1, "message": 1}

    for needle in target.personal:
        assert find(engine, needle) == [], f"{needle} survived erasure"
    # The legal hold: the case and its source message are still there, clinical content intact,
    # the person masked.
    with Session(engine) as s:
        ae = s.get_one(AdverseEvent, target.adverse_event_id)
        assert target.ae_text in ae.raw_text and ae.legal_hold
        [source] = [s.get_one(Message, m) for m in target.ae_message_ids]
        assert target.ae_text in source.body and "seizure" in source.body
        hcp = s.get_one(Hcp, target.hcp_id)
        assert hcp.erased_at is not None and hcp.name is None and hcp.licence_id is None
        assert all(c.address.startswith("erased:") for c in s.execute(
            select(Consent).where(Consent.hcp_id == target.hcp_id)).scalars())
        [erased] = s.execute(select(AuditEvent).where(AuditEvent.action == "hcp.erased",
                                                      AuditEvent.subject_id == target.hcp_id)).scalars()
        assert erased.actor_id == "dpo-ticket-42" and erased.data["changed"]["message"] >= 8
        assert audit.verify(s).ok
        # The staff note on the case is kept with the case, the person masked; other notes are erased.
        kept = {n.subject_type: n.text for n in s.execute(select(StaffNote).where(StaffNote.subject_id.in_(
            [target.hcp_id, target.handoff_id, target.medical_inquiry_id, target.adverse_event_id]))).scalars()}
        assert "confirmed the seizure" in kept.pop("adverse_event")
        assert set(kept.values()) == {"[erased]"} and len(kept) == 3
    # Nobody else was touched.
    for needle in [*other.personal, other.ae_text]:
        assert find(engine, needle), f"{needle} of another HCP was erased"


def test_erasing_twice_or_an_unknown_hcp_is_refused_clearly(two_hcps: tuple[Planted, Planted], cli_db: None,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    target, _ = two_hcps
    assert main(["hcp", "erase", target.hcp_id]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["hcp", "erase", target.hcp_id, "--yes"]) == 0
    capsys.readouterr()
    assert main(["hcp", "erase", target.hcp_id, "--yes"]) == 2
    assert "already erased" in capsys.readouterr().err
    assert main(["hcp", "erase", "nobody", "--yes"]) == 2
    assert "no HCP with id 'nobody'" in capsys.readouterr().err


def test_the_append_only_histories_still_refuse_any_other_change(two_hcps: tuple[Planted, Planted],
                                                                 session: Session) -> None:
    from sqlalchemy.exc import DBAPIError

    target, _ = two_hcps
    consent = session.execute(select(Consent).where(Consent.hcp_id == target.hcp_id)).scalars().first()
    change = session.execute(select(PreferenceChange).where(PreferenceChange.hcp_id == target.hcp_id)).scalars().first()
    assert consent is not None and change is not None
    with pytest.raises(DBAPIError), session.begin_nested():
        consent.address = "whatsapp:+440000000000"
        session.flush()
    with pytest.raises(DBAPIError), session.begin_nested():
        consent.action = "opt_out"
        consent.address = f"erased:{target.hcp_id}"
        session.flush()
    with pytest.raises(DBAPIError), session.begin_nested():
        change.new_value = "weekly"
        session.flush()


def test_export_holds_everything_about_the_person_and_nothing_about_others(
        two_hcps: tuple[Planted, Planted], cli_db: None, tmp_path: Path) -> None:
    target, other = two_hcps
    out = tmp_path / "export.json"
    assert main(["hcp", "export", target.hcp_id, "--out", str(out)]) == 0
    text = out.read_text()
    data = json.loads(text)
    assert data["hcp"]["name"] == target.name and data["hcp"]["licence_id"] == target.licence
    for needle in [*target.personal, target.ae_text]:
        assert needle in text
    for needle in [other.name, other.phone, other.free_text]:
        assert needle not in text
    assert {c["id"] for c in data["conversations"]} == {target.webchat_conversation_id,
                                                        target.whatsapp_conversation_id}
    assert [ae["id"] for ae in data["adverse_events"]] == [target.adverse_event_id]
    assert data["adverse_events"][0]["source_message_ids"] == target.ae_message_ids
    assert next(c["text"] for c in data["comments"]).startswith("Too many messages")
    assert len(data["preference_history"]) == 2 and len(data["consent_history"]) == 1
    assert "session_token_hash" not in data["conversations"][0]
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_export_of_an_unknown_hcp_fails_without_writing(cli_db: None, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "export.json"
    assert main(["hcp", "export", "nobody", "--out", str(out)]) == 2
    assert not out.exists() and "no HCP" in capsys.readouterr().err


def test_an_erased_hcp_keeps_only_pseudonymous_feedback_for_the_aggregates(
        two_hcps: tuple[Planted, Planted], engine: Engine, cli_db: None) -> None:
    target, _ = two_hcps
    assert main(["hcp", "erase", target.hcp_id, "--yes"]) == 0
    with Session(engine) as s:
        comments = list(s.execute(select(FeedbackComment).where(FeedbackComment.hcp_id == target.hcp_id)).scalars())
        assert [(c.text, c.category, c.subject) for c in comments] == [("[erased]", "frequency",
                                                                         f"hcp:{target.hcp_id}")]


def test_a_table_added_later_is_swept_too(two_hcps: tuple[Planted, Planted], engine: Engine, cli_db: None) -> None:
    """Derived copies (analytics rollups, theme examples) in tables erase() knows nothing about."""
    import uuid

    from sqlalchemy import Column, Integer, Table

    target, other = two_hcps
    meta = MetaData()
    probe = Table(f"probe_{uuid.uuid4().hex[:8]}", meta, Column("id", Integer, primary_key=True),
                  Column("note", Text), Column("examples", JSON))
    meta.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(probe.insert(), [
                {"id": 1, "note": f"called {target.phone} about {target.name}",
                 "examples": [f"mail {target.email}", {"who": target.licence}]},
                {"id": 2, "note": f"called {other.phone}", "examples": [other.email]}])
        assert main(["hcp", "erase", target.hcp_id, "--yes"]) == 0
        with engine.connect() as conn:
            rows = dict(conn.execute(select(probe.c.id, probe.c.note)).all())
            examples = dict(conn.execute(select(probe.c.id, probe.c.examples)).all())
        assert rows[1] == "called [erased] about [erased]"
        assert examples[1] == ["mail [erased]", {"who": "[erased]"}]
        assert rows[2] == f"called {other.phone}" and examples[2] == [other.email]
    finally:
        meta.drop_all(engine)


@pytest.mark.parametrize("replicas", [False, True])
def test_erase_empties_rasas_trackers_of_the_persons_conversations(
        two_hcps: tuple[Planted, Planted], cli_db: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], replicas: bool) -> None:
    """Rasa's tracker store keeps every turn's text and slots; a fake Rasa HTTP API on loopback."""
    target, other = two_hcps
    trackers = {c: [{"event": "user", "text": target.name}] for c in
                (target.webchat_conversation_id, target.whatsapp_conversation_id, other.webchat_conversation_id)}
    fake = FastAPI()

    @fake.put("/conversations/{cid}/tracker/events")
    async def replace(cid: str, token: str, request: Request) -> dict[str, object]:
        assert token == "rasa-secret"
        trackers[cid] = await request.json()
        return {"sender_id": cid, "events": trackers[cid]}

    server = LiveServer(fake, free_port()).start()
    try:
        if replicas:  # replicas share one tracker store: one that is down is passed over for the next
            monkeypatch.setenv("CONCIERGE_RASA_URLS", f"http://127.0.0.1:{free_port()},{server.url}")
        else:
            monkeypatch.setenv("CONCIERGE_RASA_URL", server.url)
        monkeypatch.setenv("CONCIERGE_RASA_TOKEN", "rasa-secret")
        assert main(["hcp", "erase", target.hcp_id, "--yes"]) == 0
    finally:
        server.stop()
    assert json.loads(capsys.readouterr().out)["rasa_trackers_emptied"] == 2
    assert trackers[target.webchat_conversation_id] == [] == trackers[target.whatsapp_conversation_id]
    assert trackers[other.webchat_conversation_id] != []


def test_erase_says_when_rasa_could_not_be_reached(two_hcps: tuple[Planted, Planted], cli_db: None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    target, _ = two_hcps
    assert main(["hcp", "erase", target.hcp_id, "--yes"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rasa_trackers_emptied"] == 0
    assert "did not empty 2 tracker(s)" in captured.err
