"""HCPs as they really write, through the real Rasa 3.6 server and the real api (wording our own).

A misspelt product question is answered from the library; a meeting with an MSL asked for in
everyday words becomes an MSL meeting request; asking for the medical information people hands over
to Medical Information (never a rep); asking for somebody real right after a turn the bot got wrong
hands over at once; an adverse event with a question in it gets one acknowledgement, then the answer.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.conversations.models import ConversationState
from api.handoffs.models import Handoff
from api.requests.models import ServiceRequest
from tests.conftest import LiveStack
from tests.e2e.test_conversation_flows import Chat, _texts, demo_library  # noqa: F401 (fixture)

pytestmark = pytest.mark.rasa


@pytest.mark.usefixtures("demo_library")
def test_a_product_question_with_a_misspelt_name_and_a_typo_is_answered(live_stack: LiveStack) -> None:
    chat = Chat(live_stack.api_url)
    replies = chat.say("whats the recomended startng dose of cardiovx")
    answer = next((m for m in replies if m["approval_code"]), None)
    assert answer is not None, replies
    assert answer["approval_code"] == "HAL-CVX-001-INT-2601"


def test_an_msl_visit_asked_for_in_everyday_words_is_an_msl_meeting_request(live_stack: LiveStack,
                                                                             engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    first = _texts(chat.say("could your science liaison swing by our diabetes clinic some time soon?"))
    assert "didn't quite get that" not in first and "outside what I can help with" not in first
    # The form asks whatever it still needs (who, when); answer both in plain words.
    reply = first
    for answer in ("the msl please", "any wednesday afternoon"):
        if "reference SR-" in reply:
            break
        reply = _texts(chat.say(answer))
    # every request form ends with its summary: nothing is created before Confirm
    assert "Please check your meeting request" in reply, reply
    reply = _texts(chat.say("Confirm", payload="/affirm"))
    assert "reference SR-" in reply, reply
    with Session(engine) as s:
        conv = chat.conversation(s)
        row = s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).scalar_one()
        assert (row.kind, row.team) == ("meeting", "msl")


def test_asking_for_the_medical_information_people_hands_over_to_medical_information(live_stack: LiveStack,
                                                                                     engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    chat.say("please connect me with the medical information folks")
    with Session(engine) as s:
        conv = chat.conversation(s)
        handoff = s.execute(select(Handoff).where(Handoff.conversation_id == conv.id)).scalar_one()
        assert handoff.target == "medical_information"
        assert conv.state == ConversationState.queued


def test_asking_for_somebody_real_after_a_miss_hands_over_at_once(live_stack: LiveStack, engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    missed = _texts(chat.say("zzkq vbnm plork"))
    assert "didn't quite get that" in missed or "outside what I can help with" in missed
    chat.say("fine, can I get hold of somebody real please")
    with Session(engine) as s:
        conv = chat.conversation(s)
        assert conv.state == ConversationState.queued
        assert s.execute(select(Handoff).where(Handoff.conversation_id == conv.id)).scalar_one().target == "rep"


@pytest.mark.usefixtures("demo_library")
def test_an_adverse_event_with_a_question_gets_one_acknowledgement_then_the_answer(live_stack: LiveStack) -> None:
    chat = Chat(live_stack.api_url)
    replies = chat.say("A patient of mine developed a widespread itchy rash a week after starting cardiovex. "
                       "What is the recommended starting dose of cardiovex?")
    texts = [str(m["text"]) for m in replies]
    assert "reference AE-" in texts[0] and "To complete the report" in texts[0], texts
    assert replies[1]["approval_code"] == "HAL-CVX-001-INT-2601", texts
    assert len(replies) == 2
    assert not any("didn't quite get that" in t or "Is there anything else I can help" in t for t in texts)


@pytest.mark.usefixtures("demo_library")
def test_an_excipient_question_is_offered_to_medical_information(live_stack: LiveStack) -> None:
    chat = Chat(live_stack.api_url)
    replies = chat.say("which excipients are in the glucorel pen? checking for polysorbate before I prescribe")
    assert "didn't quite get that" not in _texts(replies)
    assert any(b["payload"] == "/ask_medical_information" for m in replies for b in m["buttons"]), replies
