"""The action endpoint speaks Rasa's action-server protocol (payloads recorded from Rasa 3.6)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation
from api.handoffs.models import Handoff

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "rasa"


def recorded(name: str, conversation_id: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    body = copy.deepcopy(body)
    body["sender_id"] = conversation_id
    body["tracker"]["sender_id"] = conversation_id
    return body


def _conversation(client: TestClient) -> str:
    """A new web chat conversation's id: found by its own session token (the shared test database holds
    other tests' conversations, some created at the same instant)."""
    from api.conversations import service as conversations

    token = client.post("/api/webchat/sessions").json()["session_id"]
    state = client.app.state.concierge  # type: ignore[attr-defined]
    with state.session_factory() as s:
        return str(conversations.get_by_session_token(s, token).id)


def _url(client: TestClient) -> str:
    token = client.app.state.concierge.settings.action_token  # type: ignore[attr-defined]
    return f"/rasa/webhook?token={token}"


def test_the_recorded_payloads_are_real_rasa_requests() -> None:
    for name in ("action_request_handoff", "action_concierge_fallback", "action_answer_question"):
        body = json.loads((RECORDED / f"{name}.json").read_text())
        assert body["next_action"] == name
        assert body["version"].startswith("3.6")
        assert body["tracker"]["latest_message"]["text"]
        assert body["tracker"]["latest_message"]["metadata"]["message_id"] >= 100


def test_handoff_action_queues_a_handoff_for_the_msl_the_hcp_asked_for(client: TestClient) -> None:
    conv_id = _conversation(client)
    r = client.post(_url(client), json=recorded("action_request_handoff", conv_id))
    assert r.status_code == 200
    body = r.json()
    assert body["events"] == []
    (resp,) = body["responses"]
    assert "medical science liaison" in resp["custom"]["text"]
    state = client.app.state.concierge  # type: ignore[attr-defined]
    with state.session_factory() as s:
        handoff = s.execute(select(Handoff).where(Handoff.conversation_id == conv_id)).scalar_one()
        assert handoff.target == "msl" and handoff.status == "queued"
        assert s.get(Conversation, conv_id).state == "queued"  # type: ignore[union-attr]


def test_fallback_action_offers_a_person_on_the_second_miss(client: TestClient) -> None:
    conv_id = _conversation(client)
    first = client.post(_url(client), json=recorded("action_concierge_fallback", conv_id)).json()
    second = client.post(_url(client), json=recorded("action_concierge_fallback", conv_id)).json()
    assert first["responses"][0]["custom"]["buttons"] == []
    assert second["responses"][0]["custom"]["buttons"] == [
        {"title": "Talk to a person", "payload": "/request_human"}]
    assert second["responses"][0]["custom"]["turn_failed"] is True


def test_a_wrong_token_is_refused(client: TestClient) -> None:
    conv_id = _conversation(client)
    r = client.post("/rasa/webhook?token=nope", json=recorded("action_request_handoff", conv_id))
    assert r.status_code == 403
    r = client.post("/rasa/webhook", json=recorded("action_request_handoff", conv_id))
    assert r.status_code == 403


def test_an_unknown_action_is_404(client: TestClient) -> None:
    body = recorded("action_request_handoff", _conversation(client))
    body["next_action"] = "action_does_not_exist"
    assert client.post(_url(client), json=body).status_code == 404


def test_an_unknown_conversation_is_rejected_the_way_rasa_understands(client: TestClient) -> None:
    r = client.post(_url(client), json=recorded("action_request_handoff", "no-such-conversation"))
    assert r.status_code == 400
    assert r.json() == {"action_name": "action_request_handoff", "error": "unknown conversation"}


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"next_action": "x"}'])
def test_malformed_calls_are_400(client: TestClient, raw: bytes) -> None:
    r = client.post(_url(client), content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_every_action_run_is_audited(client: TestClient) -> None:
    from api.audit.models import AuditEvent

    conv_id = _conversation(client)
    client.post(_url(client), json=recorded("action_concierge_fallback", conv_id))
    state = client.app.state.concierge  # type: ignore[attr-defined]
    with Session(state.engine) as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "bot.action",
                                                AuditEvent.subject_id == conv_id)).scalar_one()
        assert ev.data["action"] == "action_concierge_fallback"
        assert ev.data["message_id"] == 102
