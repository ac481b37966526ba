"""One behaviour per custom action, run on the test database with recorded Rasa trackers."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations.models import Conversation, Message
from api.hcps.models import ChannelIdentity, Hcp
from api.rasa.actions.submit_verification import ALREADY_VERIFIED
from api.requests import desk
from api.requests.models import ServiceRequest
from api.safety.models import Consent, MedicalInquiry
from api.staff.models import StaffUser
from api.staff.service import StaffIdentity
from feedback import service as feedback
from feedback.models import AnswerRating, FeedbackComment, PreferenceChange, SurveyResponse
from tests.bot.conftest import NOW, RunAction, texts


def _inbound(session: Session, conv: Conversation, body: str) -> Message:
    msg = Message(conversation_id=conv.id, direction="in", sender_type="hcp", channel=conv.channel,
                  body=body, status="processed", created_at=NOW)
    session.add(msg)
    session.flush()
    return msg


def test_samples_submit_creates_a_service_request_with_reference_and_sla(
        run_action: RunAction, session: Session, conversation: Conversation) -> None:
    result = run_action("action_submit_samples", "12 Harley Street", intent="inform",
                        slots={"product": "cardiovex", "sample_quantity": 3,
                               "delivery_address": "12 Harley Street", "request_confirmed": "yes"})
    row = session.execute(select(ServiceRequest).where(
        ServiceRequest.conversation_id == conversation.id)).scalar_one()
    assert row.kind == "samples" and row.team == "rep" and row.product == "cardiovex"
    assert row.details == {"product": "cardiovex", "sample_quantity": 3,
                           "delivery_address": "12 Harley Street"}
    assert row.sla_due_at == NOW + timedelta(days=3)
    first = texts(result)[0]
    assert row.reference.startswith("SR-") and row.reference in first and "26 Nov 2026" in first
    assert {"event": "slot", "name": "sample_quantity", "value": None} in result.events
    assert {"event": "slot", "name": "request_confirmed", "value": None} in result.events


def test_meeting_with_an_msl_goes_to_the_msl_team(run_action: RunAction, session: Session,
                                                  conversation: Conversation) -> None:
    run_action("action_submit_meeting", "tuesday", intent="inform",
               slots={"meeting_with": "an MSL", "preferred_times": "Tuesday 2pm", "request_confirmed": "yes"})
    row = session.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conversation.id)
                          .order_by(ServiceRequest.created_at.desc())).scalars().first()
    assert row is not None and row.kind == "meeting" and row.team == "msl"


def test_every_service_request_kind_has_a_submit_action(run_action: RunAction, session: Session,
                                                        conversation: Conversation) -> None:
    for action in ("action_submit_patient_support", "action_submit_access", "action_submit_literature",
                   "action_submit_contact_update"):
        run_action(action, "x", intent="inform", slots={"product": "glucorel", "support_topic": "copay",
                                                         "access_topic": "prior auth",
                                                         "literature_topic": "phase 3",
                                                         "new_contact_details": "a@b.org",
                                                         "request_confirmed": "yes"})
    kinds = set(session.execute(select(ServiceRequest.kind).where(
        ServiceRequest.conversation_id == conversation.id)).scalars())
    assert kinds == {"patient_support", "access", "literature", "contact_update"}


def _resolve_latest_request(session: Session, conversation: Conversation) -> ServiceRequest:
    """Staff resolve the conversation's latest request: that is when CSAT is asked (not at submission)."""
    row = session.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conversation.id)
                          .order_by(ServiceRequest.created_at.desc())).scalars().first()
    assert row is not None
    staff = StaffUser(email=f"{row.id}@halcyon.example", name="Sam Rivera", password_hash="x", roles=["rep", "msl"],
                      active=True, available=True, created_at=NOW)
    session.add(staff)
    session.flush()
    ident = StaffIdentity(id=staff.id, email=staff.email, name=staff.name, roles=frozenset({"rep", "msl"}),
                          territory=None, session_id="s", csrf_token="c")
    desk.change_status(session, row.id, ident, status="resolved", now=NOW)
    return row


def test_a_submitted_request_does_not_ask_csat_until_staff_resolve_it(
        run_action: RunAction, session: Session, conversation: Conversation) -> None:
    result = run_action("action_submit_meeting", "x", intent="inform",
                        slots={"meeting_with": "an MSL", "preferred_times": "Friday",
                               "request_confirmed": "yes"})
    assert not any("satisfied" in t for t in texts(result))
    assert feedback.pending_survey(session, conversation) is None
    row = _resolve_latest_request(session, conversation)
    result = run_action("action_give_score", "/give_score", intent="give_score",
                        entities=[{"entity": "score", "value": "4"}], message_id=None)
    csat = session.execute(select(SurveyResponse).where(SurveyResponse.conversation_id == conversation.id,
                                                        SurveyResponse.kind == "csat")).scalar_one()
    assert csat.score == 4 and csat.status == "answered" and csat.service_request_id == row.id
    # first CSAT of this profile → NPS asked once
    assert any("recommend" in t for t in texts(result))


def test_nps_is_not_asked_again_within_90_days(run_action: RunAction, session: Session,
                                               conversation: Conversation) -> None:
    feedback.ask_survey(session, conversation, kind="nps", now=NOW - timedelta(days=30))
    feedback.record_score(session, conversation, score=9, message_id=None, now=NOW - timedelta(days=30))
    run_action("action_submit_samples", "x", intent="inform", slots={"product": "respizan", "request_confirmed": "yes"})
    _resolve_latest_request(session, conversation)
    result = run_action("action_give_score", "5", intent="give_score")
    assert not any("recommend" in t for t in texts(result))
    assert feedback.nps_due(session, conversation, now=NOW + timedelta(days=61))


def test_an_out_of_range_score_is_refused_and_not_stored(run_action: RunAction, session: Session,
                                                         conversation: Conversation) -> None:
    run_action("action_submit_samples", "x", intent="inform", slots={"product": "respizan", "request_confirmed": "yes"})
    _resolve_latest_request(session, conversation)
    result = run_action("action_give_score", "9", intent="give_score")
    assert "1 to 5" in texts(result)[0]
    assert feedback.pending_survey(session, conversation) is not None


def test_not_helpful_rating_is_tied_to_the_answer_and_asks_why(run_action: RunAction, session: Session,
                                                               conversation: Conversation) -> None:
    result = run_action("action_rate_answer", '/rate_answer{"helpful": false}', intent="rate_answer",
                        entities=[{"entity": "helpful", "value": "false"}], slots={"last_answer_id": "a1"})
    assert result.responses[0]["custom"]["buttons"][0]["payload"].startswith("/rating_reason")
    run_action("action_rating_reason", "it was incomplete", intent="rating_reason")
    rating = session.execute(select(AnswerRating).where(
        AnswerRating.conversation_id == conversation.id)).scalar_one()
    assert rating.answer_id == "a1" and rating.helpful is False and rating.reason == "incomplete"


def test_rating_the_same_answer_twice_keeps_one_rating(run_action: RunAction, session: Session,
                                                       conversation: Conversation) -> None:
    run_action("action_rate_answer", "useless", intent="rate_answer", slots={"last_answer_id": "a2"})
    run_action("action_rate_answer", "that was helpful", intent="rate_answer", slots={"last_answer_id": "a2"})
    rows = session.execute(select(AnswerRating).where(AnswerRating.answer_id == "a2")).scalars().all()
    assert len(rows) == 1 and rows[0].helpful is True


def test_once_a_month_sets_frequency_with_history(run_action: RunAction, session: Session,
                                                  conversation: Conversation) -> None:
    msg = _inbound(session, conversation, "once a month is enough")
    result = run_action("action_set_preference", msg.body, intent="set_preference", message_id=msg.id)
    assert "at most once a month" in texts(result)[0]
    assert feedback.profile(session, conversation) == {"frequency": "monthly"}
    run_action("action_set_preference", "actually weekly please", intent="set_preference")
    hist = feedback.history(session, conversation)
    assert [(h.old_value, h.new_value) for h in hist] == [(None, "monthly"), ("monthly", "weekly")]
    assert hist[0].message_id == msg.id and hist[0].actor_type == "hcp"
    audited = session.execute(select(AuditEvent).where(AuditEvent.action == "preference.changed")).scalars()
    assert len(list(audited)) >= 2


def test_preference_history_cannot_be_rewritten(run_action: RunAction, session: Session) -> None:
    import pytest
    from sqlalchemy.exc import DBAPIError

    run_action("action_set_preference", "email instead please", intent="set_preference")
    change = session.execute(select(PreferenceChange)).scalars().first()
    assert change is not None
    with pytest.raises(DBAPIError), session.begin_nested():
        session.delete(change)
        session.flush()


def test_no_marketing_records_a_consent_opt_out(run_action: RunAction, session: Session,
                                                conversation: Conversation) -> None:
    run_action("action_set_preference", "no more marketing emails", intent="set_preference")
    consent = session.execute(select(Consent).where(Consent.address == f"conversation:{conversation.id}")
                              ).scalar_one()
    assert consent.purpose == "marketing" and consent.action == "opt_out"


def test_a_preference_without_a_value_asks_what_to_change(run_action: RunAction) -> None:
    result = run_action("action_set_preference", "update my preferences", intent="set_preference")
    assert result.responses[0]["custom"]["buttons"]


def test_too_much_comment_is_stored_and_lowers_frequency(run_action: RunAction, session: Session,
                                                         conversation: Conversation) -> None:
    result = run_action("action_record_comment", "you're sending me too much", intent="give_comment")
    comment = session.execute(select(FeedbackComment).where(
        FeedbackComment.conversation_id == conversation.id)).scalar_one()
    assert comment.category == "frequency"
    assert feedback.profile(session, conversation)["frequency"] == "less_often"
    assert "less often" in texts(result)[0]


def test_ask_medical_information_creates_an_inquiry_with_the_unanswered_question(
        run_action: RunAction, session: Session, conversation: Conversation) -> None:
    from knowledge.models import Answer

    question = _inbound(session, conversation, "can cardiovex be given to a 10 year old?")
    session.add(Answer(conversation_id=conversation.id, message_id=question.id, query=question.body,
                       market="GB", audience="hcp", decision="decline", score=0.1, candidates=[],
                       created_at=NOW))
    session.flush()
    result = run_action("action_ask_medical_information", "/ask_medical_information",
                        intent="ask_medical_information")
    inquiry = session.execute(select(MedicalInquiry).where(
        MedicalInquiry.conversation_id == conversation.id)).scalar_one()
    assert inquiry.text == question.body and inquiry.message_id == question.id
    reply = texts(result)[0]
    assert inquiry.reference in reply and "2 working days" in reply and "in this chat" in reply


def test_ask_medical_information_without_a_question_asks_for_it(run_action: RunAction, session: Session,
                                                                conversation: Conversation) -> None:
    result = run_action("action_ask_medical_information", "ask medical info", intent="ask_medical_information")
    assert "type the question" in texts(result)[0]
    assert session.execute(select(MedicalInquiry).where(
        MedicalInquiry.conversation_id == conversation.id)).first() is None


def test_out_of_scope_twice_offers_a_person(run_action: RunAction, conversation: Conversation) -> None:
    first = run_action("action_out_of_scope", "book a flight", intent="out_of_scope")
    second = run_action("action_out_of_scope", "order a pizza", intent="out_of_scope")
    assert "outside what I can help with" in texts(first)[0]
    assert first.responses[0]["custom"]["turn_failed"] is True
    assert second.responses[0]["custom"]["buttons"] == [{"title": "Talk to a person", "payload": "/request_human"}]
    assert conversation.failed_turns == 2


def test_verification_creates_a_pending_hcp_and_binds_the_whatsapp_number(
        run_action: RunAction, session: Session) -> None:
    conv = Conversation(channel="whatsapp", address="+447700900123", state="bot", audience="hcp",
                        failed_turns=0, created_at=NOW)
    session.add(conv)
    session.flush()
    result = run_action("action_submit_verification", "UK", intent="inform", conv=conv,
                        slots={"hcp_name": "Dr Ada Jones", "licence_number": "GMC 1234567", "country": "UK"})
    hcp = session.get(Hcp, conv.hcp_id)
    assert hcp is not None and hcp.verification_status == "pending"
    assert (hcp.name, hcp.licence_id, hcp.country) == ("Dr Ada Jones", "GMC 1234567", "GB")
    identity = session.execute(select(ChannelIdentity).where(
        ChannelIdentity.address == "+447700900123")).scalar_one()
    assert identity.hcp_id == hcp.id
    assert conv.audience == "public"  # public content only until a person verifies
    assert "Dr Ada Jones" in texts(result)[0]


@pytest.mark.parametrize("before", ["verified", "pending", "rejected"])
def test_going_through_verification_again_keeps_one_record_and_never_demotes_a_verified_hcp(
        before: str, run_action: RunAction, session: Session) -> None:
    hcp = Hcp(name="Dr Ada Jones", licence_id="GMC 1234567", country="GB", verification_status=before,
              created_at=NOW)
    session.add(hcp)
    session.flush()
    conv = Conversation(channel="whatsapp", address=f"+4477009{uuid.uuid4().int % 10**5:05d}", state="bot",
                        audience="hcp" if before == "verified" else "public", hcp_id=hcp.id, failed_turns=0,
                        created_at=NOW)
    session.add(conv)
    session.flush()
    hcps_before = session.scalar(select(func.count()).select_from(Hcp))
    result = run_action("action_submit_verification", "Ireland", intent="inform", conv=conv,
                        slots={"hcp_name": "Dr Ada Jones-Byrne", "licence_number": "IMC 445566", "country": "Ireland"})
    assert conv.hcp_id == hcp.id                                   # the same person, no second record
    assert session.scalar(select(func.count()).select_from(Hcp)) == hcps_before
    session.refresh(hcp)
    event = session.execute(select(AuditEvent).where(AuditEvent.subject_id == hcp.id)
                            .order_by(AuditEvent.seq.desc())).scalars().first()
    assert event is not None
    if before == "verified":
        assert hcp.verification_status == "verified" and conv.audience == "hcp"
        assert (hcp.name, hcp.licence_id, hcp.country) == ("Dr Ada Jones", "GMC 1234567", "GB")
        assert "already verified" in texts(result)[0]
        assert event.action == "hcp.verification_repeated"
    else:
        assert hcp.verification_status == "pending" and conv.audience == "public"
        assert (hcp.name, hcp.licence_id, hcp.country) == ("Dr Ada Jones-Byrne", "IMC 445566", "IE")
        assert "updated your registration details" in texts(result)[0]
        assert event.action == "hcp.verification_requested" and event.data["resubmitted_from"] == before


@pytest.mark.parametrize("status", ["verified", "pending", "rejected", None])
def test_the_verification_check_stops_the_form_only_for_a_verified_hcp(
        status: str | None, run_action: RunAction, session: Session) -> None:
    hcp = None
    if status is not None:
        hcp = Hcp(name="Dr Ada Jones", verification_status=status, created_at=NOW)
        session.add(hcp)
        session.flush()
    conv = Conversation(channel="whatsapp", address=f"+4477008{uuid.uuid4().int % 10**5:05d}", state="bot",
                        audience="public", hcp_id=hcp.id if hcp else None, failed_turns=0, created_at=NOW)
    session.add(conv)
    session.flush()
    result = run_action("action_check_verification", "verify me", intent="verify_identity", conv=conv)
    if status == "verified":
        assert texts(result) == [ALREADY_VERIFIED.format(name="Dr Ada Jones")]
        assert result.events == [{"event": "followup", "name": "action_listen"}]  # the form never starts
        assert conv.audience == "hcp"
        assert hcp is not None
        event = session.execute(select(AuditEvent).where(AuditEvent.subject_id == hcp.id)).scalar_one()
        assert event.action == "hcp.verification_repeated" and event.data["stage"] == "before_form"
    else:  # the rules go on to verification_form
        assert result.responses == [] and result.events == []


def test_a_verified_whatsapp_number_gets_hcp_content_again(run_action: RunAction, session: Session) -> None:
    hcp = Hcp(name="Dr Ada Jones", verification_status="verified", created_at=NOW)
    session.add(hcp)
    session.flush()
    conv = Conversation(channel="whatsapp", address="+447700900124", state="bot", audience="public",
                        hcp_id=hcp.id, failed_turns=0, created_at=NOW)
    session.add(conv)
    session.flush()
    run_action("action_answer_question", "what is the dose of cardiovex", intent="ask_question", conv=conv)
    assert conv.audience == "hcp"


def test_each_form_slot_has_a_question(run_action: RunAction) -> None:
    result = run_action("action_ask_product", "", intent="request_samples")
    assert texts(result) == ["Which product is this about?"]
    assert len(result.responses[0]["custom"]["buttons"]) == 3


@pytest.mark.parametrize("needs_verification", [True, False])
def test_an_escalation_says_when_verification_would_unlock_the_answer(
        run_action: RunAction, monkeypatch: pytest.MonkeyPatch, needs_verification: bool) -> None:
    import knowledge.service
    from api.rasa.actions.answer_question import FOR_VERIFIED_HCPS, NO_APPROVED_ANSWER, VERIFY_BUTTON

    def fake_answer(*_: object, **__: object) -> knowledge.service.AnswerDecision:
        return knowledge.service.AnswerDecision("escalate", "ans-1", None, None, 0.2, [],
                                                needs_verification=needs_verification)

    monkeypatch.setattr(knowledge.service, "answer_question", fake_answer)
    result = run_action("action_answer_question", "renal dosing study data for glucorel", intent="ask_question")
    body = result.responses[0]["custom"]
    assert body["escalated"] is True
    if needs_verification:
        assert texts(result) == [FOR_VERIFIED_HCPS] and VERIFY_BUTTON in body["buttons"]
    else:
        assert texts(result) == [NO_APPROVED_ANSWER] and VERIFY_BUTTON not in body["buttons"]
