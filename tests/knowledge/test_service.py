from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.errors import ContentGated
from knowledge.engine import KnowledgeBase
from knowledge.library import LibraryInvalid
from knowledge.models import Answer, ContentItem, ContentVersion
from knowledge.service import (
    Recipient,
    answer_question,
    list_items,
    load_library,
    render_for_send,
    withdraw,
)
from tests.knowledge.conftest import DEMO_LIBRARY, TODAY, make_item, small_items

WriteLibrary = Callable[..., Path]
US_HCP = Recipient("US", "hcp", verified=True)


@pytest.fixture()
def loaded(session: Session, write_library: WriteLibrary) -> Session:
    load_library(session, write_library(small_items()), actor="tester")
    return session


def test_load_library_creates_items_with_one_current_version(loaded: Session) -> None:
    # Only this test's library: the shared test database may hold other tests' committed items.
    items = {i.content_id: i for i in list_items(loaded) if i.content_id.startswith("T-")}
    assert set(items) == {"T-001", "T-002", "T-003", "T-004"}
    assert all(i.current_version == 1 and i.versions == 1 for i in items.values())


def test_reloading_the_same_library_changes_nothing(loaded: Session, write_library: WriteLibrary) -> None:
    report = load_library(loaded, write_library(small_items(), "again.jsonl"))
    assert report.unchanged == 4 and report.new_versions == []


def test_new_version_becomes_current_and_history_is_kept(loaded: Session, write_library: WriteLibrary) -> None:
    items = small_items()
    items[0] = make_item(version=2, body="Store Cardiovex below 25°C.")
    report = load_library(loaded, write_library(items, "v2.jsonl"))
    assert report.new_versions == ["T-001@2"]
    versions = loaded.scalars(select(ContentVersion).where(ContentVersion.content_id == "T-001")
                              .order_by(ContentVersion.version)).all()
    assert [(v.version, v.is_current) for v in versions] == [(1, False), (2, True)]
    assert loaded.get(ContentItem, "T-001").current_version == 2  # type: ignore[union-attr]
    assert next(i for i in list_items(loaded) if i.content_id == "T-001").versions == 2


def test_changed_content_under_the_same_version_is_rejected_and_nothing_written(
        loaded: Session, write_library: WriteLibrary) -> None:
    items = small_items()
    items[0]["body"] = "Silently edited."
    items.append(make_item(id="T-NEW"))
    with pytest.raises(LibraryInvalid, match="error"):
        load_library(loaded, write_library(items, "edited.jsonl"))
    assert loaded.get(ContentItem, "T-NEW") is None


def test_invalid_library_loads_nothing(session: Session, write_library: WriteLibrary) -> None:
    before = session.scalar(select(func.count()).select_from(ContentItem))
    with pytest.raises(LibraryInvalid):
        load_library(session, write_library([make_item(), make_item(id="B", kind="blog")]))
    assert session.scalar(select(func.count()).select_from(ContentItem)) == before


def test_demo_library_loads_with_products(session: Session) -> None:
    report = load_library(session, DEMO_LIBRARY)
    assert report.items >= 60 and report.products == 3


def test_answer_writes_the_answer_row_and_an_audit_event(loaded: Session, fake_kb: KnowledgeBase) -> None:
    d = answer_question(loaded, fake_kb, "How is Respizan injected?", US_HCP, today=TODAY,
                        conversation_id="conv-1", message_id=7)
    assert (d.decision, d.content_id, d.version) == ("answer", "T-003", 1)
    row = loaded.get(Answer, d.answer_id)
    assert row is not None
    assert (row.query, row.decision, row.content_id, row.content_version, row.conversation_id, row.message_id) \
        == ("How is Respizan injected?", "answer", "T-003", 1, "conv-1", 7)
    assert row.candidates[0]["content_id"] == "T-003" and "score" in row.candidates[0]
    assert d.candidates[0][0] == "T-003" and len(d.candidates) <= 5
    event = loaded.scalars(select(AuditEvent).where(AuditEvent.subject_id == d.answer_id)).one()
    assert event.action == "knowledge.answer"


def test_off_topic_question_is_escalated_and_logged(loaded: Session, fake_kb: KnowledgeBase) -> None:
    d = answer_question(loaded, fake_kb, "book me a table for two tonight", US_HCP, today=TODAY)
    assert d.decision == "escalate" and d.content_id is None
    row = loaded.get(Answer, d.answer_id)
    assert row is not None and row.decision == "escalate"


def test_withdrawal_takes_effect_at_once_without_a_rebuild(loaded: Session, fake_kb: KnowledgeBase) -> None:
    first = answer_question(loaded, fake_kb, "How is Respizan injected?", US_HCP, today=TODAY)
    assert first.content_id == "T-003"
    withdraw(loaded, "T-003", actor="content-admin", reason="label update")
    again = answer_question(loaded, fake_kb, "How is Respizan injected?", US_HCP, today=TODAY)
    assert again.content_id != "T-003" and "T-003" not in [c for c, _ in again.candidates]
    with pytest.raises(ContentGated, match="withdrawn"):
        render_for_send(loaded, "T-003", 1, US_HCP, today=TODAY)


def test_expired_item_is_not_answered_even_when_best_match(session: Session, write_library: WriteLibrary,
                                                           fake_kb: KnowledgeBase) -> None:
    items = small_items()
    items[2]["expires_at"] = "2026-11-23"  # expires today
    load_library(session, write_library(items))
    d = answer_question(session, fake_kb, "How is Respizan injected?", US_HCP, today=TODAY)
    assert d.content_id != "T-003" and "T-003" not in [c for c, _ in d.candidates]


def test_render_for_send_is_the_body_verbatim_with_safety_statement_and_code(session: Session) -> None:
    load_library(session, DEMO_LIBRARY)
    sendable = render_for_send(session, "CVX-005", 1, US_HCP, today=TODAY)
    body = ("Store Cardiovex tablets below 30°C in the original blister pack to protect from moisture. "
            "Refrigeration is not required. Keep out of the sight and reach of children.")
    assert sendable.body == body
    assert sendable.safety_statement and sendable.safety_statement.startswith("Important Safety Information")
    assert sendable.text() == f"{body}\n\n{sendable.safety_statement}\nRef: HAL-CVX-005-INT-2601"


@pytest.mark.parametrize(("content_id", "recipient", "reason"), [
    ("CVX-017", Recipient("GB", "hcp", True), "market GB"),         # US-only service item
    ("CVX-013", Recipient("US", "public", False), "audience public"),
    ("CVX-007", Recipient("US", "hcp", verified=False), "verified"),  # srd
    ("CVX-024", US_HCP, "expired"),
    ("CVX-026", US_HCP, "withdrawn"),
    ("GLR-024", US_HCP, "draft"),
])
def test_send_time_gate_refuses_with_reason(session: Session, content_id: str, recipient: Recipient,
                                            reason: str) -> None:
    load_library(session, DEMO_LIBRARY)
    with pytest.raises(ContentGated, match=reason):
        render_for_send(session, content_id, 1, recipient, today=TODAY)


def test_superseded_version_cannot_be_sent(loaded: Session, write_library: WriteLibrary) -> None:
    items = small_items()
    items[0] = make_item(version=2, body="Store Cardiovex below 25°C.")
    load_library(loaded, write_library(items, "v2.jsonl"))
    with pytest.raises(ContentGated, match="superseded"):
        render_for_send(loaded, "T-001", 1, US_HCP, today=TODAY)
    assert render_for_send(loaded, "T-001", 2, US_HCP, today=TODAY).body == "Store Cardiovex below 25°C."




def _with_verified_only_item(session: Session, write_library: WriteLibrary) -> None:
    items = [*small_items(), make_item(
        id="T-SRD", kind="srd", title="Glucorel renal impairment data", product="glucorel",
        approval_code="APP-T-SRD", audience=["hcp"],
        questions=["Is there Glucorel exposure data in moderate renal impairment?"],
        body="In the GLU-R2 pharmacokinetic study Glucorel exposure rose 18% in moderate renal impairment.")]
    load_library(session, write_library(items, "srd.jsonl"), actor="tester")


@pytest.mark.parametrize("recipient", [Recipient("US", "hcp", verified=False), Recipient("US", "public")])
def test_unverified_asker_of_verified_only_content_is_told_verification_unlocks_it(
        session: Session, write_library: WriteLibrary, fake_kb: KnowledgeBase, recipient: Recipient) -> None:
    _with_verified_only_item(session, write_library)
    question = "Is there Glucorel exposure data in moderate renal impairment?"
    d = answer_question(session, fake_kb, question, recipient, today=TODAY)
    assert d.decision == "escalate" and d.content_id is None and d.needs_verification
    assert "T-SRD" not in [c for c, _ in d.candidates]          # nothing of the gated item leaks
    event = session.scalars(select(AuditEvent).where(AuditEvent.subject_id == d.answer_id)).one()
    assert event.data["needs_verification"] is True
    verified = answer_question(session, fake_kb, question, US_HCP, today=TODAY)
    assert (verified.decision, verified.content_id, verified.needs_verification) == ("answer", "T-SRD", False)


def test_no_verification_offer_for_patients_off_topic_or_content_they_may_see(
        session: Session, write_library: WriteLibrary, fake_kb: KnowledgeBase) -> None:
    _with_verified_only_item(session, write_library)
    question = "Is there Glucorel exposure data in moderate renal impairment?"
    patient = answer_question(session, fake_kb, question, Recipient("US", "patient"), today=TODAY)
    assert patient.decision == "escalate" and not patient.needs_verification
    unverified = Recipient("US", "hcp", verified=False)
    off_topic = answer_question(session, fake_kb, "which train goes to the airport", unverified, today=TODAY)
    assert off_topic.decision == "escalate" and not off_topic.needs_verification
    open_item = answer_question(session, fake_kb, "How is Respizan injected?", unverified, today=TODAY)
    assert open_item.decision == "answer" and not open_item.needs_verification
