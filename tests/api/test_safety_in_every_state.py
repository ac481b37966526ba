"""Non-negotiable 2: every inbound message is screened first, in every state, without Rasa.

An adverse event is persisted with day 0 = receipt time, linked to its message, and
committed before the reply goes out (here: while Rasa is still hanging).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from api.app import default_safety_hook
from api.conversations.models import Conversation, Message
from api.safety.models import AdverseEvent, AdverseEventMessage
from api.settings import Settings
from tests.fakes.rasa import FakeRasa

AE_TEXT = "my patient developed a severe rash two days after starting cardiovex"


@pytest.fixture()
def screened_client(open_app: Callable[..., TestClient], settings: Settings) -> Callable[..., TestClient]:
    """Apps with the real safety screen."""

    def make(rasa: FakeRasa, timeout: float = 2.0) -> TestClient:
        s = settings.model_copy(update={"rasa_timeout": timeout})
        return open_app(s, rasa, safety_hook=default_safety_hook(s))

    return make


def _conversation_id(engine: Engine, text: str) -> tuple[str, Message]:
    with Session(engine) as s:
        msg = s.execute(select(Message).where(Message.body == text).order_by(Message.id.desc())).scalars().first()
        assert msg is not None
        return msg.conversation_id, msg


def _set_state(engine: Engine, sid_text: str, state: str) -> None:
    conv_id, _ = _conversation_id(engine, sid_text)
    with Session(engine) as s, s.begin():
        s.execute(update(Conversation).where(Conversation.id == conv_id).values(state=state))


@pytest.mark.parametrize("state", ["bot", "queued", "human", "closed"])
@pytest.mark.parametrize("rasa_mode", ["ok", "error"])
def test_an_adverse_event_is_captured_in_every_state(
    state: str, rasa_mode: str, screened_client: Callable[[FakeRasa], TestClient], engine: Engine
) -> None:
    client = screened_client(FakeRasa(mode=rasa_mode))
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    url = f"/api/webchat/sessions/{sid}/messages"
    opener = f"hello from a {state} {rasa_mode} conversation"
    client.post(url, json={"text": opener})
    _set_state(engine, opener, state)
    r = client.post(url, json={"text": AE_TEXT + f" ({state}/{rasa_mode})"})
    assert r.status_code == 200
    replies = [m["text"] for m in r.json()["messages"]]
    assert any("AE-" in t for t in replies), replies  # the HCP gets the case reference
    _, msg = _conversation_id(engine, AE_TEXT + f" ({state}/{rasa_mode})")
    with Session(engine) as s:
        link = s.execute(select(AdverseEventMessage).where(AdverseEventMessage.message_id == msg.id)).scalar_one()
        case = s.get(AdverseEvent, link.adverse_event_id)
        assert case is not None
        assert case.day0_at == msg.created_at
        assert case.legal_hold is True


def test_the_adverse_event_is_committed_before_any_reply(
    screened_client: Callable[..., TestClient], engine: Engine
) -> None:
    client = screened_client(FakeRasa(mode="hang"), 3.0)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    text = AE_TEXT + " (before reply)"
    result: dict[str, object] = {}

    def send() -> None:
        result["response"] = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": text})

    t = threading.Thread(target=send)
    t.start()
    # While Rasa hangs and no reply has been sent, the case already exists in the database.
    found = False
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and not found:
        with Session(engine) as s:
            case = s.execute(select(AdverseEvent).where(AdverseEvent.raw_text == text)).scalar_one_or_none()
            found = case is not None
        time.sleep(0.05)
    assert "response" not in result
    assert found
    t.join()


def test_stop_is_honoured_before_rasa_sees_the_message(
    screened_client: Callable[[FakeRasa], TestClient],
) -> None:
    rasa = FakeRasa()
    client = screened_client(rasa)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "STOP"})
    assert r.status_code == 200
    assert rasa.calls == []
    assert r.json()["messages"], "the opt-out is confirmed once"


def test_an_adverse_event_sent_with_a_client_message_id_another_session_used_opens_a_case(
    screened_client: Callable[[FakeRasa], TestClient], engine: Engine
) -> None:
    """Idempotency keys are per conversation: a key another session used never swallows a report."""
    client = screened_client(FakeRasa())
    a = client.post("/api/webchat/sessions").json()["session_id"]
    b = client.post("/api/webchat/sessions").json()["session_id"]
    client.post(f"/api/webchat/sessions/{a}/messages", json={"text": "good morning", "client_message_id": "1"})
    report = AE_TEXT + " (reported from a second session)"
    r = client.post(f"/api/webchat/sessions/{b}/messages", json={"text": report, "client_message_id": "1"})
    assert r.status_code == 200
    assert any("AE-" in m["text"] for m in r.json()["messages"])
    _, msg = _conversation_id(engine, report)
    with Session(engine) as s:
        assert s.execute(select(AdverseEventMessage).where(AdverseEventMessage.message_id == msg.id)).scalar_one()
