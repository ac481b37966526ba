"""COMPLIANCE.md, through the app: a special situation is a case before any reply; the screen's
context and its typed-handoff path work end to end (Rasa hanging or down)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.app import create_app, default_safety_hook
from api.audit.models import AuditEvent
from api.conversations.models import Conversation, Message
from api.handoffs.models import Handoff
from api.rasa.actions.ask_form_slot import QUESTIONS
from api.safety.models import AdverseEvent
from api.settings import Settings
from tests.fakes.rasa import FakeRasa

PREGNANCY_REPORT = ("My patient found out she is 7 weeks pregnant; she has been taking cardiovex daily "
                    "throughout - what should we do now?")


@pytest.fixture()
def screened_client(engine: Engine, settings: Settings) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(rasa: FakeRasa, timeout: float = 2.0) -> TestClient:
        s = settings.model_copy(update={"rasa_timeout": timeout})
        app = create_app(s, engine=engine, safety_hook=default_safety_hook(s),
                         rasa_transport=rasa.transport(), warm_knowledge=False)
        c = TestClient(app)
        c.__enter__()
        clients.append(c)
        ready = app.state.concierge.safety_ready
        assert ready is not None
        deadline = time.monotonic() + 180
        while not ready() and time.monotonic() < deadline:  # the model trains once per test session
            time.sleep(0.2)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_a_pregnancy_exposure_opens_a_case_before_the_reply_goes_out(
    screened_client: Callable[..., TestClient], engine: Engine
) -> None:
    client = screened_client(FakeRasa())
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": PREGNANCY_REPORT})
    assert r.status_code == 200
    replies = r.json()["messages"]
    with Session(engine) as s:
        case = s.execute(select(AdverseEvent).where(AdverseEvent.raw_text == PREGNANCY_REPORT)).scalar_one()
        assert "pregnancy_exposure" in case.categories
        assert case.legal_hold
        assert any(case.reference in m["text"] for m in replies), replies  # the HCP gets the reference
        # The audit chain is in commit order: the case was recorded before any reply was queued.
        created = s.execute(select(AuditEvent.seq).where(AuditEvent.action == "adverse_event.created",
                                                         AuditEvent.subject_id == case.id)).scalar_one()
        queued = s.execute(select(AuditEvent.seq).where(
            AuditEvent.action == "message.queued",
            AuditEvent.subject_id.in_([str(m["id"]) for m in replies]))).scalars().all()
        assert queued and created < min(queued)


def _add_bot_question(engine: Engine, sid: str, text: str) -> None:
    """The bot's last message in the conversation is a form question (as a Rasa form would send)."""
    with Session(engine) as s, s.begin():
        conv = s.execute(select(Conversation).order_by(Conversation.created_at.desc())).scalars().first()
        assert conv is not None
        last = s.execute(select(Message).where(Message.conversation_id == conv.id)
                         .order_by(Message.id.desc())).scalars().first()
        assert last is not None
        s.add(Message(conversation_id=conv.id, direction="out", sender_type="bot", channel=conv.channel,
                      body=text, status="sent", created_at=last.created_at))


def test_a_practice_address_given_to_the_delivery_question_opens_no_case(
    screened_client: Callable[..., TestClient], engine: Engine
) -> None:
    client = screened_client(FakeRasa())
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    url = f"/api/webchat/sessions/{sid}/messages"
    client.post(url, json={"text": "hi there"})
    _add_bot_question(engine, sid, QUESTIONS["delivery_address"][0])
    address = "Regional Burns & Poisons Unit, Level 3, Westfield Hospital, 9 Orchard Way"
    r = client.post(url, json={"text": address})
    assert r.status_code == 200
    assert not any("AE-" in m["text"] for m in r.json()["messages"])
    with Session(engine) as s:
        assert s.execute(select(AdverseEvent).where(AdverseEvent.raw_text == address)).first() is None


def test_typing_an_ask_for_a_person_hands_over_while_rasa_is_down(
    screened_client: Callable[..., TestClient], engine: Engine
) -> None:
    client = screened_client(FakeRasa(mode="error"))
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    url = f"/api/webchat/sessions/{sid}/messages"
    client.post(url, json={"text": "what is the storage temperature?"})
    r = client.post(url, json={"text": "could I speak to a real person please"})
    (reply,) = r.json()["messages"]
    assert "reference H-" in reply["text"]
    with Session(engine) as s:
        msg = s.execute(select(Message).where(Message.id == reply["id"])).scalar_one()
        conv = s.get(Conversation, msg.conversation_id)
        assert conv is not None and conv.state == "queued"
        handoff = s.execute(select(Handoff).where(Handoff.conversation_id == conv.id)).scalar_one()
        assert handoff.reason == "rasa_unavailable"


def test_a_name_with_person_in_it_answering_the_name_question_is_not_a_handoff(
    screened_client: Callable[..., TestClient], engine: Engine
) -> None:
    client = screened_client(FakeRasa(mode="error"))
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    url = f"/api/webchat/sessions/{sid}/messages"
    first = client.post(url, json={"text": "please verify me"})
    # on a loaded machine the first turn may finish after the response (pending): wait for its reply,
    # so the intake question below is the last thing the bot said
    deadline = time.monotonic() + 20
    while first.json().get("pending") and time.monotonic() < deadline:
        time.sleep(0.1)
        if client.get(url, params={"after": 0}).json()["messages"][1:]:
            break
    _add_bot_question(engine, sid, QUESTIONS["hcp_name"][0])
    r = client.post(url, json={"text": "Person"})
    assert r.status_code == 200
    assert not any("reference H-" in m["text"] for m in r.json()["messages"])
    with Session(engine) as s:
        msg = s.execute(select(Message).where(Message.body == "Person")).scalars().first()
        assert msg is not None
        assert s.execute(select(Handoff).where(Handoff.conversation_id == msg.conversation_id)).first() is None
