"""Possible duplicate cases: found when a case is recorded, decided once by a reviewer, audited."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations.models import Conversation
from api.errors import Conflict, InvalidInput, NotFound
from api.hcps.models import Hcp
from api.safety import duplicates, service
from api.safety.models import AdverseEvent, AdverseEventDuplicate, AeStatus, DuplicateStatus
from api.safety.screen import ScreenResult
from api.staff.notes import StaffNote
from tests.safety.conftest import T0, MakeConversation, MakeMessage


def _hcp(session: Session) -> Hcp:
    hcp = Hcp(name="Dr Ines Okafor", specialty="cardiology", country="GB", verification_status="verified",
              created_at=T0)
    session.add(hcp)
    session.flush()
    return hcp


def _report(session: Session, conv: Conversation, make_message: MakeMessage, body: str, *, at: datetime,
            products: tuple[str, ...] = ("cardiovex",), categories: tuple[str, ...] = ("side_effect",),
            serious_terms: tuple[str, ...] = ()) -> AdverseEvent:
    msg = make_message(conv, body, at=at)
    result = ScreenResult(adverse_event=True, ae_categories=categories, ae_score=0.9, products=products,
                          serious=bool(serious_terms), serious_terms=serious_terms)
    outcome = service.apply(session, conversation=conv, message=msg, result=result, now=at + timedelta(seconds=1))
    assert outcome.adverse_event_id is not None
    case = session.get(AdverseEvent, outcome.adverse_event_id)
    assert case is not None
    return case


def _links(session: Session, case: AdverseEvent) -> list[AdverseEventDuplicate]:
    return list(session.execute(select(AdverseEventDuplicate).where(
        AdverseEventDuplicate.case_id == case.id)).scalars())


def test_same_hcp_product_and_event_in_another_conversation_is_linked_as_possible_duplicate(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    hcp = _hcp(session)
    first_conv = make_conversation(hcp_id=hcp.id)
    second_conv = make_conversation(hcp_id=hcp.id, channel="webchat", address=None)
    first = _report(session, first_conv, make_message, "one of my patients came out in hives on cardiovex",
                    at=T0)
    second = _report(session, second_conv, make_message, "reporting hives again, patient taking cardiovex",
                     at=T0 + timedelta(days=6))
    [link] = _links(session, second)
    assert link.candidate_id == first.id and link.status == DuplicateStatus.possible
    assert link.reasons["same"] == ["hcp"]
    assert link.reasons["products"] == ["cardiovex"]
    assert link.reasons["events"] == ["term:hive"] and link.reasons["event_words"] == ["hives"]
    assert link.reasons["days_apart"] == 6.0
    # Nothing about either case changed: the link only points.
    assert first.status == second.status == AeStatus.new
    actions = session.execute(select(AuditEvent.subject_id).where(
        AuditEvent.action == "adverse_event.possible_duplicate")).scalars().all()
    assert {first.id, second.id} <= set(actions)


def test_same_conversation_after_the_follow_up_window_is_linked(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    conv = make_conversation()  # no HCP known: the conversation is the reporter
    first = _report(session, conv, make_message, "patient on cardiovex has had a seizure", at=T0,
                    serious_terms=("seizure",))
    second = _report(session, conv, make_message, "the seizures came back, still on cardiovex",
                     at=T0 + timedelta(days=3), serious_terms=("seizures",))
    assert second.id != first.id  # past 24 h: a new case, not a follow-up
    [link] = _links(session, second)
    assert link.candidate_id == first.id and link.reasons["same"] == ["conversation"]
    assert "term:seizure" in link.reasons["events"]


@pytest.mark.parametrize(("label", "days", "products", "body", "other_hcp"), [
    ("a different product", 2, ("respizan",), "patient came out in hives on respizan", False),
    ("a different event", 2, ("cardiovex",), "patient on cardiovex had a bad headache", False),
    ("more than 30 days later", 31, ("cardiovex",), "patient came out in hives on cardiovex", False),
    ("another HCP in another conversation", 2, ("cardiovex",), "patient came out in hives on cardiovex", True),
])
def test_no_link_without_same_reporter_product_event_and_window(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage, label: str, days: int,
        products: tuple[str, ...], body: str, other_hcp: bool) -> None:
    hcp = _hcp(session)
    _report(session, make_conversation(hcp_id=hcp.id), make_message, "hives after starting cardiovex", at=T0)
    second_hcp = _hcp(session) if other_hcp else hcp
    second = _report(session, make_conversation(hcp_id=second_hcp.id), make_message, body,
                     at=T0 + timedelta(days=days), products=products)
    assert _links(session, second) == [], label


def test_a_closed_case_is_not_a_candidate(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    hcp = _hcp(session)
    first = _report(session, make_conversation(hcp_id=hcp.id), make_message, "hives on cardiovex", at=T0)
    first.status = AeStatus.closed
    session.flush()
    second = _report(session, make_conversation(hcp_id=hcp.id), make_message, "hives with cardiovex",
                     at=T0 + timedelta(days=1))
    assert _links(session, second) == []


def test_special_situation_without_a_symptom_matches_on_its_category(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    hcp = _hcp(session)
    first = _report(session, make_conversation(hcp_id=hcp.id), make_message,
                    "a patient took twice the cardiovex dose", at=T0, categories=("overdose",))
    second = _report(session, make_conversation(hcp_id=hcp.id), make_message,
                     "double cardiovex intake by one patient", at=T0 + timedelta(days=2), categories=("overdose",))
    [link] = _links(session, second)
    assert link.candidate_id == first.id and link.reasons["events"] == ["category:overdose"]


def test_a_failing_check_keeps_the_case_and_is_audited(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> list[AdverseEventDuplicate]:
        raise RuntimeError("index unavailable")

    monkeypatch.setattr(duplicates, "_find_and_link", broken)
    conv = make_conversation()
    case = _report(session, conv, make_message, "hives on cardiovex", at=T0)
    assert session.get(AdverseEvent, case.id) is not None
    failed = session.execute(select(AuditEvent).where(AuditEvent.action == "adverse_event.duplicate_check_failed",
                                                      AuditEvent.subject_id == case.id)).scalars().all()
    assert len(failed) == 1


def _pair(session: Session, make_conversation: MakeConversation,
          make_message: MakeMessage) -> tuple[AdverseEvent, AdverseEvent, AdverseEventDuplicate]:
    hcp = _hcp(session)
    first = _report(session, make_conversation(hcp_id=hcp.id), make_message, "hives on cardiovex", at=T0)
    second = _report(session, make_conversation(hcp_id=hcp.id), make_message, "cardiovex and hives",
                     at=T0 + timedelta(days=1))
    [link] = _links(session, second)
    return first, second, link


def test_reviewer_confirms_once_and_both_trails_show_it(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    first, second, link = _pair(session, make_conversation, make_message)
    at = T0 + timedelta(days=2)
    duplicates.decide(session, first.id, link.id, decision="confirmed", actor_id="pv-1", now=at,
                      reason="same patient, same reaction")
    assert link.status == DuplicateStatus.confirmed and link.decided_by == "pv-1" and link.decided_at == at
    events = session.execute(select(AuditEvent).where(AuditEvent.action == "adverse_event.duplicate_confirmed",
                                                      AuditEvent.subject_id.in_([first.id, second.id]))
                             ).scalars().all()
    assert {e.subject_id for e in events} == {first.id, second.id}
    assert all(e.actor_id == "pv-1" for e in events)
    note = session.execute(select(StaffNote).where(StaffNote.subject_id == link.id)).scalar_one()
    assert note.text == "same patient, same reaction"
    with pytest.raises(Conflict, match="already confirmed"):
        duplicates.decide(session, second.id, link.id, decision="rejected", actor_id="pv-2", now=at, reason="no")
    assert link.status == DuplicateStatus.confirmed


def test_bad_decisions_are_refused_and_change_nothing(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    first, _second, link = _pair(session, make_conversation, make_message)
    with pytest.raises(InvalidInput, match="say why"):
        duplicates.decide(session, first.id, link.id, decision="rejected", actor_id="pv-1", now=T0, reason="  ")
    with pytest.raises(InvalidInput, match="confirmed, rejected"):
        duplicates.decide(session, first.id, link.id, decision="merge", actor_id="pv-1", now=T0)
    with pytest.raises(InvalidInput, match="longer than"):
        duplicates.decide(session, first.id, link.id, decision="confirmed", actor_id="pv-1", now=T0,
                          reason="x" * 1001)
    with pytest.raises(NotFound):
        duplicates.decide(session, "no-such-case", link.id, decision="confirmed", actor_id="pv-1", now=T0)
    with pytest.raises(NotFound):
        duplicates.decide(session, first.id, "no-such-link", decision="confirmed", actor_id="pv-1", now=T0)
    session.refresh(link)
    assert link.status == DuplicateStatus.possible and link.decided_by is None


def test_links_are_never_deleted(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    _first, _second, link = _pair(session, make_conversation, make_message)
    with pytest.raises(DatabaseError), session.begin_nested():
        session.execute(delete(AdverseEventDuplicate).where(AdverseEventDuplicate.id == link.id))
    assert session.get(AdverseEventDuplicate, link.id) is not None


def test_list_for_case_shows_the_link_from_both_ends(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    first, second, _link = _pair(session, make_conversation, make_message)
    [from_new] = duplicates.list_for_case(session, second.id)
    [from_old] = duplicates.list_for_case(session, first.id)
    assert from_new.this_is_newer and from_new.other.id == first.id
    assert not from_old.this_is_newer and from_old.other.id == second.id
    assert from_new.reasons_label == "same HCP; product cardiovex; event hives; day 0 1.0 days apart"
    assert duplicates.undecided_counts(session, {first.id, second.id}) == {first.id: 1, second.id: 1}


def test_a_follow_up_that_names_the_product_makes_the_case_a_possible_duplicate(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    hcp = _hcp(session)
    first = _report(session, make_conversation(hcp_id=hcp.id), make_message, "hives on cardiovex", at=T0)
    conv = make_conversation(hcp_id=hcp.id)
    second = _report(session, conv, make_message, "my patient has hives", at=T0 + timedelta(days=1), products=())
    assert _links(session, second) == []  # no product yet: nothing to compare
    again = _report(session, conv, make_message, "the hives started with cardiovex",
                    at=T0 + timedelta(days=1, hours=2))
    assert again.id == second.id  # a follow-up of the same case
    [link] = _links(session, second)
    assert link.candidate_id == first.id and link.reasons["products"] == ["cardiovex"]
