"""The HCP's words pick the team: Medical Information never goes to a rep, an MSL by any of its names,
patient support as a request, a call back when they ask to be phoned; a plain request for a person
after a turn we got wrong is handed over at once."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations.models import Conversation, Message
from api.handoffs import routing
from api.handoffs.models import Handoff
from api.rasa.actions.request_handoff import CALLBACK_TEXT, PATIENT_SUPPORT_BUTTON
from tests.bot.conftest import NOW, RunAction, texts


@pytest.mark.parametrize(("words", "target"), [
    ("could you connect me with med info, not sales", "medical_information"),
    ("I'd like the medical information people to ring me", "medical_information"),
    ("transfer me to your MI team", "medical_information"),
    ("bitte mit der medizinischen Information verbinden", "medical_information"),
    ("is the science liaison for Yorkshire around", "msl"),
    ("my MSL please", "msl"),
    ("put me in touch with patient support for my pt", "patient_support"),
    ("ask the account manager to get in touch", "rep"),
    ("someone please", "rep"),
])
def test_the_words_name_the_team(words: str, target: str) -> None:
    assert routing.target_for(words) == target


def test_an_entity_counts_only_when_the_words_name_no_team() -> None:
    assert routing.target_for("speak to them", "msl") == "msl"
    assert routing.target_for("medical info team please", "rep") == "medical_information"


@pytest.mark.parametrize(("words", "person"), [
    ("get me an actual human", True), ("can I talk to somebody", True), ("operator", True),
    ("med info please", True), ("Ines Person", False), ("human insulin or analogue?", False),
    ("is there someone who studied this in the elderly", False),
])
def test_what_reads_as_a_plain_request_for_a_person(words: str, person: bool) -> None:
    assert routing.asks_for_person(words) is person


def _typed(session: Session, conv: Conversation, body: str) -> int:
    msg = Message(conversation_id=conv.id, direction="in", sender_type="hcp", channel=conv.channel, body=body,
                  status="processed", created_at=NOW)
    session.add(msg)
    session.flush()
    return msg.id


def test_medical_information_is_never_handed_to_a_rep(run_action: RunAction, session: Session,
                                                      conversation: Conversation) -> None:
    body = "can you put me through to the medical information folks"
    run_action("action_request_handoff", body, intent="request_human",
               entities=[{"entity": "handoff_target", "value": "rep"}],
               message_id=_typed(session, conversation, body))
    handoff = session.execute(select(Handoff).where(Handoff.conversation_id == conversation.id)).scalar_one()
    assert handoff.target == "medical_information"


def test_asking_the_rep_to_phone_opens_a_handoff_with_the_call_back_chosen(
        run_action: RunAction, session: Session, conversation: Conversation) -> None:
    body = "have my rep give me a ring this afternoon"
    result = run_action("action_request_handoff", body, intent="request_human",
                        message_id=_typed(session, conversation, body))
    handoff = session.execute(select(Handoff).where(Handoff.conversation_id == conversation.id)).scalar_one()
    assert (handoff.target, handoff.reason, handoff.contact_preference) == ("rep", "callback_request", "callback")
    assert texts(result) == [CALLBACK_TEXT.format(who="a colleague from our customer team",
                                                  reference=handoff.reference)]
    assert session.execute(select(AuditEvent).where(AuditEvent.action == "handoff.contact_preference",
                                                    AuditEvent.subject_id == handoff.id)).scalar_one()


def test_the_team_is_read_from_the_stored_text_when_rasa_was_given_the_intent(
        run_action: RunAction, session: Session, conversation: Conversation) -> None:
    body = "ugh, just get me the MSL"
    run_action("action_request_handoff", "/request_human", intent="request_human",
               message_id=_typed(session, conversation, body))
    handoff = session.execute(select(Handoff).where(Handoff.conversation_id == conversation.id)).scalar_one()
    assert handoff.target == "msl"


def test_patient_support_is_offered_as_a_request_not_a_chat_handoff(
        run_action: RunAction, session: Session, conversation: Conversation) -> None:
    result = run_action("action_request_handoff", "talk to patient support", intent="request_human")
    assert session.execute(select(Handoff).where(Handoff.conversation_id == conversation.id)).first() is None
    assert result.responses[0]["custom"]["buttons"] == [PATIENT_SUPPORT_BUTTON]


@pytest.mark.parametrize(("who", "team"), [("the science liaison", "msl"), ("someone medical", "msl"),
                                           ("our usual rep", "rep")])
def test_a_meeting_in_everyday_words_goes_to_the_right_team(run_action: RunAction, session: Session,
                                                            conversation: Conversation, who: str, team: str) -> None:
    from api.requests.models import ServiceRequest

    run_action("action_submit_meeting", "wednesday lunchtime", intent="inform",
               slots={"meeting_with": who, "preferred_times": "wednesday lunchtime",
                      "request_confirmed": "yes"})
    row = session.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conversation.id)).scalar_one()
    assert row.team == team


def test_being_put_through_to_medical_information_is_a_handoff_to_medical_information(
        run_action: RunAction, session: Session, conversation: Conversation) -> None:
    body = "could you patch me through to med info"
    run_action("action_ask_medical_information", body, intent="ask_medical_information",
               message_id=_typed(session, conversation, body))
    handoff = session.execute(select(Handoff).where(Handoff.conversation_id == conversation.id)).scalar_one()
    assert handoff.target == "medical_information"


def test_a_question_for_medical_information_still_becomes_an_inquiry(
        run_action: RunAction, session: Session, conversation: Conversation) -> None:
    from api.safety.models import MedicalInquiry

    body = "please ask medical information whether the tablets can be crushed for a feeding tube"
    run_action("action_ask_medical_information", body, intent="ask_medical_information",
               message_id=_typed(session, conversation, body))
    assert session.execute(select(Handoff).where(Handoff.conversation_id == conversation.id)).first() is None
    assert session.execute(select(MedicalInquiry).where(MedicalInquiry.conversation_id == conversation.id)
                           ).scalar_one().text == body
