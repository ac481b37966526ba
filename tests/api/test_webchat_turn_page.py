"""The web chat's answer to a message comes from the turn that processed it (no read-back): it must be
exactly what the stored conversation says — the same replies, and the same waiting banner."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.conversations import service as conversations
from api.db import unit_of_work
from api.handoffs.service import open_handoff
from tests.fakes.rasa import FakeRasa


def _replies_in_history(client: TestClient, sid: str, message_id: int) -> list[dict[str, Any]]:
    """The outbound messages the history lists after ``message_id`` and before the next inbound one."""
    history = client.get(f"/api/webchat/sessions/{sid}/messages", params={"after": message_id}).json()["messages"]
    out = []
    for m in history:
        if m["direction"] == "in":
            break
        out.append(m)
    return out


def _inbound_id(client: TestClient, sid: str, text: str) -> int:
    history = client.get(f"/api/webchat/sessions/{sid}/messages").json()["messages"]
    return int([m for m in history if m["direction"] == "in" and m["text"] == text][-1]["id"])


def test_the_turns_answer_is_what_the_history_stores(client: TestClient) -> None:
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    for text in ("good afternoon", "which doses are there?"):
        answer = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": text}).json()
        assert answer["pending"] is False and answer["messages"]
        stored = _replies_in_history(client, sid, _inbound_id(client, sid, text))
        assert answer["messages"] == stored  # ids, text, buttons, sender, timestamps: all of it
        assert answer["waiting"] is None


def test_the_waiting_banner_comes_with_the_turns_answer(make_client: Callable[..., TestClient],
                                                        engine: Engine) -> None:
    client = make_client(FakeRasa())
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    url = f"/api/webchat/sessions/{sid}/messages"
    client.post(url, json={"text": "hi"})
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        conv = conversations.get_by_session_token(s, sid)
        handoff = open_handoff(s, conv, target="msl", reason="hcp_request", now=datetime.now(UTC))
    answer = client.post(url, json={"text": "is there a paediatric formulation?"}).json()
    listed = client.get(url).json()
    assert answer["waiting"] is not None and answer["waiting"]["reference"] == handoff.reference
    assert answer["waiting"] == listed["waiting"]
    inbound = _inbound_id(client, sid, "is there a paediatric formulation?")
    assert answer["messages"] == _replies_in_history(client, sid, inbound)


def test_a_repeated_client_message_id_gets_the_first_deliverys_replies(client: TestClient) -> None:
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    body = {"text": "samples please", "client_message_id": "page-7"}
    first = client.post("/api/webchat/messages", json=body, headers={"X-Chat-Session": sid}).json()
    again = client.post("/api/webchat/messages", json=body, headers={"X-Chat-Session": sid}).json()
    assert first["messages"] and again["messages"] == first["messages"]
