"""Persistence of the screen's findings: AE cases, criteria, deadlines, inquiries, consent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations.models import Conversation
from api.safety import service
from api.safety.classifier import RuleModelScreen
from api.safety.models import AdverseEvent, AdverseEventMessage, Consent, MedicalInquiry, Seriousness
from api.safety.screen import ScreenResult
from tests.safety.conftest import T0, MakeConversation, MakeMessage


def run(session: Session, screen: RuleModelScreen, conv: Conversation, msg_factory: MakeMessage, body: str,
        *, minutes: int = 0) -> service.SafetyOutcome:
    at = T0 + timedelta(minutes=minutes)
    msg = msg_factory(conv, body, at=at)
    return service.apply(session, conversation=conv, message=msg, result=screen.screen(body),
                         now=at + timedelta(seconds=2))


def test_ae_row_is_written_in_the_callers_transaction_with_day0_at_receipt(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    msg = make_message(conv, "my patient developed a rash after the second dose of respizan", at=T0)
    outcome = service.apply(session, conversation=conv, message=msg, result=screen.screen(msg.body),
                            now=T0 + timedelta(seconds=5))
    assert outcome.adverse_event_id is not None
    assert not outcome.stop_processing  # help continues
    # Visible in the same (uncommitted) transaction: persisted before any reply exists.
    case = session.execute(select(AdverseEvent).where(AdverseEvent.id == outcome.adverse_event_id)).scalar_one()
    assert case.day0_at == msg.created_at == T0
    assert case.legal_hold is True
    assert case.kind == "adverse_event"
    assert case.reference.startswith("AE-2026-")
    assert case.products == ["respizan"]
    links = session.execute(select(AdverseEventMessage.message_id)).scalars().all()
    assert msg.id in links
    assert not session.in_nested_transaction() or session.is_active


def test_ae_is_captured_whatever_the_conversation_state(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    for state in ("bot", "queued", "human", "closed"):
        conv = make_conversation(state=state, address=None, channel="webchat")
        outcome = run(session, screen, conv, make_message, "pt on cardiovex c/o muscle pain")
        assert outcome.adverse_event_id is not None, state


def test_missing_criteria_are_asked_once_per_case(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation(channel="webchat", address=None)
    first = run(session, screen, conv, make_message, "my patient developed a rash after the second dose")
    case = session.get(AdverseEvent, first.adverse_event_id)
    assert case is not None
    assert set(case.missing_criteria) == {"reporter", "patient", "product"}
    assert case.missing_asked
    asks = [r.text for r in first.replies if "To complete the report" in r.text]
    assert len(asks) == 1 and "which of our products" in asks[0]
    second = run(session, screen, conv, make_message, "she also has itching since the injection", minutes=5)
    assert second.adverse_event_id == first.adverse_event_id  # linked follow-up
    assert not any("To complete the report" in r.text for r in second.replies)


def test_four_criteria_complete_when_reporter_patient_product_and_event_are_known(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()  # WhatsApp number: a contactable reporter
    outcome = run(session, screen, conv, make_message, "54 yo woman on cardiovex developed muscle pain")
    case = session.get(AdverseEvent, outcome.adverse_event_id)
    assert case is not None and case.is_complete
    assert (case.has_reporter, case.has_patient, case.has_product, case.has_event) == (True, True, True, True)
    assert not case.missing_asked
    assert not any("To complete the report" in r.text for r in outcome.replies)


def test_answer_to_the_missing_criteria_question_completes_the_case(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    first = run(session, screen, conv, make_message, "pt on cardiovex c/o muscle pain")
    case = session.get(AdverseEvent, first.adverse_event_id)
    assert case is not None and case.missing_criteria == ["patient"]
    follow = run(session, screen, conv, make_message, "she is 62", minutes=3)
    assert follow.adverse_event_id == case.id
    assert case.is_complete
    assert len(service.source_message_ids(session, case.id)) == 2


def test_serious_case_is_due_in_15_days_and_non_serious_in_90(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    serious = run(session, screen, conv, make_message, "my patient on glucorel was hospitalised with pancreatitis")
    case = session.get(AdverseEvent, serious.adverse_event_id)
    assert case is not None
    assert case.seriousness == Seriousness.serious
    assert case.due_at == case.day0_at + timedelta(days=15)

    other = make_conversation(address="whatsapp:+447700900999")
    mild = run(session, screen, other, make_message, "pt on cardiovex c/o mild muscle ache")
    mild_case = session.get(AdverseEvent, mild.adverse_event_id)
    assert mild_case is not None
    # Not yet assessed: the conservative 15-day clock runs until a reviewer classifies it.
    assert mild_case.seriousness == Seriousness.unknown
    assert mild_case.due_at == mild_case.day0_at + timedelta(days=15)
    service.classify_seriousness(session, mild_case.id, seriousness="non_serious", actor_id="pv-1",
                                 now=T0 + timedelta(hours=1))
    assert mild_case.due_at == mild_case.day0_at + timedelta(days=90)
    assert mild_case.status == "triaged"


def test_due_date_rule() -> None:
    assert service.due_at(T0, "serious") == T0 + timedelta(days=15)
    assert service.due_at(T0, "non_serious") == T0 + timedelta(days=90)
    assert service.due_at(T0, "unknown") == T0 + timedelta(days=15)


def test_follow_up_after_24_hours_opens_a_new_case(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    first = run(session, screen, conv, make_message, "pt on cardiovex c/o muscle pain")
    later = run(session, screen, conv, make_message, "another patient on cardiovex has a rash", minutes=25 * 60)
    assert later.adverse_event_id != first.adverse_event_id


def test_quality_complaint_gets_its_own_kind_and_reference(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    outcome = run(session, screen, conv, make_message, "the glucorel pen was cracked when it arrived")
    case = session.get(AdverseEvent, outcome.adverse_event_id)
    assert case is not None
    assert case.kind == "quality_complaint"
    assert case.reference.startswith("PQC-2026-")
    assert case.missing_criteria == []  # no patient needed for a defect
    open_pqc = [c.reference for c in service.list_open_cases(session, kind="quality_complaint")]
    assert case.reference in open_pqc
    assert all(c.kind == "quality_complaint" for c in service.list_open_cases(session, kind="quality_complaint"))


def test_references_are_sequential_per_year(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    refs = []
    for i in range(3):
        conv = make_conversation(address=f"whatsapp:+4477009001{i:02d}")
        outcome = run(session, screen, conv, make_message, "pt on cardiovex c/o muscle pain")
        case = session.get(AdverseEvent, outcome.adverse_event_id)
        assert case is not None
        refs.append(case.reference)
    numbers = [int(r.rsplit("-", 1)[1]) for r in refs]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]


def test_adverse_event_rows_cannot_be_deleted_at_database_level(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    outcome = run(session, screen, conv, make_message, "pt on cardiovex c/o muscle pain")
    session.flush()
    with pytest.raises(DatabaseError, match="append-only"), session.begin_nested():
        session.execute(delete(AdverseEvent).where(AdverseEvent.id == outcome.adverse_event_id))
    with pytest.raises(DatabaseError, match="append-only"), session.begin_nested():
        session.execute(text("DELETE FROM adverse_event_message"))
    # Status and criteria may still change.
    session.execute(update(AdverseEvent).where(AdverseEvent.id == outcome.adverse_event_id)
                    .values(status="triaged", has_patient=True))
    assert session.get(AdverseEvent, outcome.adverse_event_id) is not None


def test_consent_history_cannot_be_changed_or_deleted(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    run(session, screen, conv, make_message, "STOP")
    with pytest.raises(DatabaseError, match="append-only"), session.begin_nested():
        session.execute(update(Consent).values(action="opt_in"))
    with pytest.raises(DatabaseError, match="append-only"), session.begin_nested():
        session.execute(delete(Consent))


def test_stop_records_opt_out_until_start(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    assert conv.address is not None
    assert not service.is_opted_out(session, channel="whatsapp", address=conv.address)
    stop = run(session, screen, conv, make_message, "STOP")
    assert stop.stop_processing
    assert "unsubscribed" in stop.replies[0].text
    assert service.is_opted_out(session, channel="whatsapp", address=conv.address)
    assert service.is_opted_out(session, channel="whatsapp", address=conv.address, purpose="marketing")
    assert service.is_opted_out(session, channel="whatsapp", address=conv.address)  # still, after more msgs
    start = run(session, screen, conv, make_message, "START", minutes=10)
    assert start.stop_processing
    assert not service.is_opted_out(session, channel="whatsapp", address=conv.address)
    # START restores service and medical messages, never marketing.
    assert service.is_opted_out(session, channel="whatsapp", address=conv.address, purpose="marketing")
    actions = session.execute(
        select(Consent.action).where(Consent.address == conv.address, Consent.purpose == "service")
        .order_by(Consent.id)
    ).scalars().all()
    assert actions == ["opt_out", "opt_in"]


def test_after_stop_a_question_opens_nothing_but_an_adverse_event_is_still_recorded(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    question = "could glucorel be prescribed just for weight loss in someone without diabetes?"
    assert screen.screen(question).off_label
    conv = make_conversation()
    run(session, screen, conv, make_message, "STOP")
    asked = run(session, screen, conv, make_message, question, minutes=5)
    assert asked.medical_inquiry_id is None and asked.stop_processing           # Medical would contact them
    assert [r.text for r in asked.replies] == [service.STILL_OPTED_OUT_TEXT]    # how to resume, nothing more
    harmed = run(session, screen, conv, make_message,
                 "my patient had a severe rash after her first Respizan injection", minutes=6)
    assert harmed.adverse_event_id is not None and harmed.stop_processing       # never dropped
    run(session, screen, conv, make_message, "START", minutes=7)
    again = run(session, screen, conv, make_message, question, minutes=8)
    assert again.medical_inquiry_id is not None


def test_help_answers_and_stops_processing(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    outcome = run(session, screen, make_conversation(), make_message, "HELP")
    assert outcome.stop_processing
    assert "STOP" in outcome.replies[0].text


def test_record_consent_rejects_unknown_purpose(session: Session) -> None:
    from api.errors import InvalidInput

    with pytest.raises(InvalidInput):
        service.record_consent(session, channel="whatsapp", address="whatsapp:+1", hcp_id=None,
                               purpose="spam", action="opt_in", source="test", message_id=None, now=T0)


def test_off_label_question_creates_a_medical_inquiry(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    outcome = run(session, screen, conv, make_message, "can I use glucorel for weight loss in non-diabetic patients?")
    assert outcome.medical_inquiry_id is not None and outcome.adverse_event_id is None
    assert outcome.stop_processing  # off-label stays with Medical: the bot does not answer it
    inquiry = session.get(MedicalInquiry, outcome.medical_inquiry_id)
    assert inquiry is not None
    assert (inquiry.status, inquiry.product, inquiry.channel, inquiry.conversation_id) == (
        "open", "glucorel", "whatsapp", conv.id)
    assert "indication" in inquiry.reasons
    assert "weight loss" not in str(inquiry.metadata_view())  # reps see metadata only
    service.answer_medical_inquiry(session, inquiry.id, response="See the SmPC.", reviewer_id="mr-1",
                                   now=T0 + timedelta(days=1))
    assert inquiry.status == "answered" and inquiry.reviewer_id == "mr-1"


def test_every_screened_message_is_audited_without_its_text(
    session: Session, screen: RuleModelScreen, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    outcome = run(session, screen, conv, make_message, "hello there")
    assert outcome.replies == [] and not outcome.stop_processing
    events = session.execute(
        select(AuditEvent).where(AuditEvent.action == "safety.screened").order_by(AuditEvent.seq.desc())
    ).scalars().first()
    assert events is not None
    assert events.data["conversation_id"] == conv.id
    assert "hello" not in str(events.data)


def test_apply_accepts_a_plain_screen_result(
    session: Session, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    msg = make_message(conv, "anything")
    outcome = service.apply(session, conversation=conv, message=msg,
                            result=ScreenResult(adverse_event=True, ae_categories=("side_effect",)), now=T0)
    case = session.get(AdverseEvent, outcome.adverse_event_id)
    assert case is not None and case.categories == ["side_effect"]
