"""While the HCP waits for a person: the bot keeps answering, each message is acknowledged, and the
request can be withdrawn; once a person has the conversation, messages are theirs alone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.audit.models import AuditEvent
from api.conversations import service as conversations
from api.conversations.models import Conversation, Message
from api.db import unit_of_work
from api.handoffs import waiting
from api.handoffs.models import Handoff
from api.handoffs.service import open_handoff
from tests.fakes.rasa import FakeRasa


@pytest.mark.parametrize("text", ["cancel", "Cancel my request please", "never mind", "nevermind!",
                                  "take me back to the assistant", "cancel the callback", "No longer needed."])
def test_short_withdrawals_cancel(text: str) -> None:
    assert waiting.wants_to_cancel(Message(body=text))


@pytest.mark.parametrize("text", ["how do I cancel a Glucorel prescription refill?", "cancellation policy for samples",
                                  "can you cancel the order and send 20 mg instead", "", "never mind the dose, what "
                                  "about storage?"])
def test_questions_that_mention_cancelling_do_not(text: str) -> None:
    assert not waiting.wants_to_cancel(Message(body=text))


def test_the_cancel_button_payload_cancels() -> None:
    assert waiting.wants_to_cancel(Message(body="Cancel my request", payload="/cancel_handoff"))
    assert not waiting.wants_to_cancel(Message(body="cancel", payload="/request_human"))


def _queued_chat(client: TestClient, engine: Engine) -> tuple[str, str, Handoff]:
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    url = f"/api/webchat/sessions/{sid}/messages"
    client.post(url, json={"text": "hello there"})
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        conv = conversations.get_by_session_token(s, sid)
        handoff = open_handoff(s, conv, target="rep", reason="hcp_request", now=datetime.now(UTC))
    return url, conv.id, handoff


def test_the_bot_keeps_answering_while_a_person_is_awaited(make_client: Callable[..., TestClient],
                                                            engine: Engine) -> None:
    rasa = FakeRasa()
    client = make_client(rasa)
    url, conv_id, _ = _queued_chat(client, engine)
    r = client.post(url, json={"text": "what strengths does the tablet come in?"})
    texts = [m["text"] for m in r.json()["messages"]]
    assert texts == ["echo: what strengths does the tablet come in?"]       # Rasa answered
    assert rasa.calls[-1]["message"] == "what strengths does the tablet come in?"
    with Session(engine) as s:
        conv = s.get(Conversation, conv_id)
        assert conv is not None and conv.state == "queued"                   # the request still stands
        relayed = s.scalars(select(AuditEvent).where(AuditEvent.action == "message.relayed",
                                                     AuditEvent.data["conversation_id"].as_string() == conv_id)).all()
        assert relayed  # the person who takes it will read it


def test_a_message_the_bot_cannot_answer_is_acknowledged_with_the_reference(
        make_client: Callable[..., TestClient], engine: Engine) -> None:
    client = make_client(FakeRasa(mode="empty"))
    url, _, handoff = _queued_chat(client, engine)
    [reply] = client.post(url, json={"text": "ok"}).json()["messages"]
    assert handoff.reference in reply["text"]
    assert reply["buttons"] == [{"title": "Cancel my request", "payload": "/cancel_handoff"}]


def test_the_hcp_withdraws_the_request_and_is_back_with_the_bot(make_client: Callable[..., TestClient],
                                                                 engine: Engine) -> None:
    rasa = FakeRasa()
    client = make_client(rasa)
    url, conv_id, handoff = _queued_chat(client, engine)
    calls = len(rasa.calls)
    [reply] = client.post(url, json={"text": "Cancel my request", "payload": "/cancel_handoff"}).json()["messages"]
    assert handoff.reference in reply["text"] and "withdrawn" in reply["text"]
    assert len(rasa.calls) == calls                                           # the api did it, not Rasa
    with Session(engine) as s:
        h = s.get(Handoff, handoff.id)
        conv = s.get(Conversation, conv_id)
        assert h is not None and (h.status, h.outcome) == ("closed", "cancelled_by_hcp")
        assert conv is not None and conv.state == "bot"
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "handoff.cancelled",
                                                  AuditEvent.subject_id == handoff.id)).one().actor_type == "hcp"
    # a second "cancel" has nothing to withdraw: it is an ordinary message for the bot
    again = client.post(url, json={"text": "cancel"}).json()["messages"]
    assert [m["text"] for m in again] == ["echo: cancel"]


def test_once_a_person_has_it_cancel_is_their_message_to_read(make_client: Callable[..., TestClient],
                                                                engine: Engine) -> None:
    rasa = FakeRasa()
    client = make_client(rasa)
    url, conv_id, handoff = _queued_chat(client, engine)
    with unit_of_work(sessionmaker(bind=engine)) as s:
        h = s.get(Handoff, handoff.id)
        conv = s.get(Conversation, conv_id)
        assert h is not None and conv is not None
        h.status, h.claimed_by, h.claimed_at, conv.state = "claimed", "someone", datetime.now(UTC), "human"
    calls = len(rasa.calls)
    r = client.post(url, json={"text": "never mind"})
    assert r.json()["messages"] == [] and len(rasa.calls) == calls          # relayed to the person only
    with Session(engine) as s:
        h = s.get(Handoff, handoff.id)
        assert h is not None and h.status == "claimed"
