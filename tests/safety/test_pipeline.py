"""The screen wired into the worker: AE captured before replies, even with Rasa down; STOP skips Rasa."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.app import create_app
from api.conversations.models import Conversation, Message
from api.safety import service
from api.safety.classifier import RuleModelScreen
from api.safety.models import AdverseEvent, AdverseEventMessage
from api.settings import Settings
from tests.fakes.rasa import FakeRasa


def make_client(engine: Engine, settings: Settings, screen: RuleModelScreen, rasa: FakeRasa) -> TestClient:
    def hook(session: Session, conv: Conversation, msg: Message, now: datetime) -> service.SafetyOutcome:
        return service.apply(session, conversation=conv, message=msg, result=screen.screen(msg.body), now=now)

    app = create_app(settings, engine=engine, safety_hook=hook, rasa_transport=rasa.transport(),
                     warm_knowledge=False)
    return TestClient(app)


@pytest.fixture()
def rasa_down() -> FakeRasa:
    return FakeRasa(mode="error")


@pytest.fixture()
def client(engine: Engine, settings: Settings, screen: RuleModelScreen, rasa_down: FakeRasa) -> Iterator[TestClient]:
    with make_client(engine, settings, screen, rasa_down) as c:
        yield c


def test_ae_is_recorded_and_acknowledged_with_rasa_down(client: TestClient, engine: Engine) -> None:
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    text = f"my patient developed a rash after the second dose of respizan ({uuid.uuid4().hex[:6]})"
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": text})
    assert r.status_code == 200
    texts = [m["text"] for m in r.json()["messages"]]
    assert any("Patient Safety team" in t for t in texts)
    assert any("To complete the report" in t for t in texts)
    with Session(engine) as session:  # this message's own link (the test database is shared)
        msg = session.execute(select(Message).where(Message.body == text)).scalar_one()
        link = session.execute(
            select(AdverseEventMessage).where(AdverseEventMessage.message_id == msg.id)
        ).scalar_one()
        case = session.get(AdverseEvent, link.adverse_event_id)
        assert case is not None
        assert case.day0_at == msg.created_at


def test_stop_is_honoured_without_asking_rasa(client: TestClient, rasa_down: FakeRasa, engine: Engine) -> None:
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "STOP"})
    assert r.status_code == 200
    (reply,) = r.json()["messages"]
    assert "unsubscribed" in reply["text"]
    assert rasa_down.calls == []
    with Session(engine) as session:
        conv = session.execute(
            select(Conversation).join(Message, Message.conversation_id == Conversation.id)
            .where(Message.body == "STOP").order_by(Message.id.desc())
        ).scalars().first()
        assert conv is not None
        assert service.is_conversation_opted_out(session, conv)
