"""Rasa is a component: slow, broken or absent, the HCP still gets an honest answer."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations.copy import RASA_FALLBACK
from api.conversations.models import Conversation, Message
from api.handoffs.models import Handoff
from tests.fakes.rasa import FakeRasa


@pytest.mark.parametrize("mode", ["hang", "error", "empty", "garbage"])
def test_a_failing_rasa_gets_the_fallback_offering_a_person(
    mode: str, make_client: Callable[..., TestClient], engine: Engine
) -> None:
    client = make_client(FakeRasa(mode=mode), rasa_timeout=1.0)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    started = time.monotonic()
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "what is the dose?"})
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    (reply,) = r.json()["messages"]
    assert reply["text"] == RASA_FALLBACK
    assert reply["buttons"] == [{"title": "Talk to a person", "payload": "/request_human"}]
    assert elapsed < 1.0 + 2.0  # the deadline, plus generous slack for a loaded CI box
    with Session(engine) as s:
        inbound = s.execute(select(Message).where(Message.body == "what is the dose?")
                            .order_by(Message.id.desc())).scalars().first()
        assert inbound is not None and inbound.status == "processed"
        assert inbound.error is not None and inbound.error.startswith("rasa ")
        failures = s.execute(select(AuditEvent).where(AuditEvent.action == "rasa.failed",
                                                      AuditEvent.subject_id == str(inbound.id))).scalars().all()
        assert len(failures) == 1


def test_rasa_not_running_at_all_gets_the_fallback(make_client: Callable[..., TestClient]) -> None:
    client = make_client(FakeRasa())
    # Replace the fake with a real client to a port where nothing listens.
    state = client.app.state.concierge  # type: ignore[attr-defined]
    from api.rasa.client import RasaClient

    state.worker.processor.rasa = RasaClient("http://127.0.0.1:9", "t", 1.0)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "hello"})
    assert r.json()["messages"][0]["text"] == RASA_FALLBACK


def test_asking_for_a_person_works_while_rasa_is_down(make_client: Callable[..., TestClient],
                                                      engine: Engine) -> None:
    client = make_client(FakeRasa(mode="error"))
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    url = f"/api/webchat/sessions/{sid}/messages"
    client.post(url, json={"text": "what is the dose?"})
    r = client.post(url, json={"text": "Talk to a person", "payload": "/request_human"})
    (reply,) = r.json()["messages"]
    assert "reference H-" in reply["text"]
    with Session(engine) as s:
        msg = s.execute(select(Message).where(Message.id == reply["id"])).scalar_one()
        conv = s.get(Conversation, msg.conversation_id)
        assert conv is not None and conv.state == "queued"
        handoff = s.execute(select(Handoff).where(Handoff.conversation_id == conv.id)).scalar_one()
        assert handoff.reason == "rasa_unavailable"
        assert "what is the dose?" in handoff.summary


def test_waiting_for_a_person_while_rasa_is_down_is_acknowledged_not_a_fallback(
        make_client: Callable[..., TestClient]) -> None:
    rasa = FakeRasa(mode="error")
    client = make_client(rasa)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    url = f"/api/webchat/sessions/{sid}/messages"
    queued = client.post(url, json={"text": "Talk to a person", "payload": "/request_human"}).json()["messages"]
    reference = next(m["text"] for m in queued if "reference" in m["text"]).split("reference ")[1][:8]
    r = client.post(url, json={"text": "hello, anyone reading this?"})
    assert r.status_code == 200
    [reply] = r.json()["messages"]
    # the request stands: its reference and a way to withdraw it, not "shall I find you a person?"
    assert reference in reply["text"] and "saved" in reply["text"]
    assert [b["payload"] for b in reply["buttons"]] == ["/cancel_handoff"]
