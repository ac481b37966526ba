"""The safety screen in the real stack (Rasa 3.6 server, api, trained screen), own wording:
a form answer is screened as that answer, a pregnancy exposure is a case with its category, and a
typed ask for a person hands over while Rasa is stopped."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.app import create_app
from api.handoffs.models import Handoff
from api.requests.models import ServiceRequest
from api.safety.models import AdverseEvent
from api.settings import Settings
from tests.conftest import LiveServer, LiveStack, free_port
from tests.e2e.test_conversation_flows import Chat, _texts

pytestmark = pytest.mark.rasa


def test_an_alarming_address_given_to_the_samples_form_opens_no_case(live_stack: LiveStack, engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    assert "How many sample packs" in _texts(chat.say("could I get some glucorel samples"))
    assert "Where should we deliver" in _texts(chat.say("two packs"))
    address = "Poisons & Overdose Unit, Emergency Dept, St Bride's Hospital, 4 Mill Road"
    reply = _texts(chat.say(address))
    assert "Please check your sample request" in reply and "AE-" not in reply
    reply = _texts(chat.say("Confirm", payload="/affirm"))
    assert "reference SR-" in reply and "AE-" not in reply
    with Session(engine) as s:
        conv = chat.conversation(s)
        assert s.execute(select(AdverseEvent).where(AdverseEvent.conversation_id == conv.id)).first() is None
        row = s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).scalar_one()
        assert row.details["delivery_address"] == address


def test_a_pregnancy_exposure_is_a_case_with_its_category(live_stack: LiveStack, engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    reply = _texts(chat.say("my patient just found out she is 10 weeks pregnant and has been on respizan all along, "
                            "what do you advise?"))
    assert "reference AE-" in reply
    with Session(engine) as s:
        conv = chat.conversation(s)
        case = s.execute(select(AdverseEvent).where(AdverseEvent.conversation_id == conv.id)).scalar_one()
        assert "pregnancy_exposure" in case.categories


def test_typing_an_ask_for_a_human_hands_over_while_rasa_is_stopped(engine: Engine, settings: Settings) -> None:
    # settings.rasa_url points at a port nothing listens on: Rasa is down.
    server = LiveServer(create_app(settings.model_copy(update={"rasa_timeout": 1.0}), engine=engine,
                                   warm_knowledge=False), free_port()).start()
    try:
        chat = Chat(server.url)
        chat.say("what is the maximum dose of cardiovex")
        reply = _texts(chat.say("I need to speak to a human please"))
        assert "reference H-" in reply
        with Session(engine) as s:
            conv = chat.conversation(s)
            handoff = s.execute(select(Handoff).where(Handoff.conversation_id == conv.id)).scalar_one()
            assert handoff.reason == "rasa_unavailable"
    finally:
        server.stop()
