"""The web chat JSON API: contract, bad input, idempotency, persistence."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.conversations.models import Message


def _count_messages(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.execute(select(func.count()).select_from(Message)).scalar_one())


def _new_session(client: TestClient) -> str:
    r = client.post("/api/webchat/sessions")
    assert r.status_code == 201
    sid = r.json()["session_id"]
    assert isinstance(sid, str) and len(sid) >= 20
    return str(sid)


def test_a_turn_returns_the_bot_replies_in_the_documented_shape(client: TestClient) -> None:
    sid = _new_session(client)
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "hello"})
    assert r.status_code == 200
    messages = r.json()["messages"]
    assert len(messages) == 1
    m = messages[0]
    assert m["text"] == "echo: hello"
    assert {"id", "text", "content_id", "content_version", "approval_code", "buttons"} <= m.keys()
    assert m["content_id"] is None and m["content_version"] is None and m["approval_code"] is None
    assert m["buttons"] == [{"title": "Talk to a person", "payload": "/request_human"}]


def test_listing_after_an_id_returns_both_sides_in_order(client: TestClient) -> None:
    sid = _new_session(client)
    client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "one"})
    client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "two"})
    everything = client.get(f"/api/webchat/sessions/{sid}/messages").json()["messages"]
    assert [(m["direction"], m["text"]) for m in everything] == [
        ("in", "one"), ("out", "echo: one"), ("in", "two"), ("out", "echo: two")]
    after = client.get(f"/api/webchat/sessions/{sid}/messages", params={"after": everything[1]["id"]})
    assert [m["text"] for m in after.json()["messages"]] == ["two", "echo: two"]


def test_a_clicked_quick_reply_sends_its_payload_to_rasa(client: TestClient, fake_rasa) -> None:  # type: ignore[no-untyped-def]
    sid = _new_session(client)
    r = client.post(f"/api/webchat/sessions/{sid}/messages",
                    json={"text": "Talk to a person", "payload": "/request_human"})
    assert r.status_code == 200
    assert fake_rasa.calls[-1]["message"] == "/request_human"


def test_unknown_session_is_404_and_stores_nothing(client: TestClient, engine: Engine) -> None:
    before = _count_messages(engine)
    r = client.post("/api/webchat/sessions/not-a-session/messages", json={"text": "hi"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert client.get("/api/webchat/sessions/nope/messages").status_code == 404
    assert _count_messages(engine) == before


def test_bad_bodies_get_a_clear_4xx_and_are_not_processed(client: TestClient, engine: Engine, fake_rasa) -> None:  # type: ignore[no-untyped-def]
    sid = _new_session(client)
    url = f"/api/webchat/sessions/{sid}/messages"
    before = _count_messages(engine)
    cases = {
        "empty text": dict(json={"text": ""}),
        "whitespace text": dict(json={"text": "   \n "}),
        "missing text": dict(json={"message": "hi"}),
        "text not a string": dict(json={"text": 42}),
        "oversized": dict(json={"text": "x" * 4097}),
        "not json": dict(content=b"text=hello", headers={"content-type": "application/json"}),
        "not utf-8": dict(content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"}),
        "json array": dict(json=["hi"]),
        "empty body": dict(content=b""),
        "unknown field": dict(json={"text": "hi", "evil": True}),
        "nul character": dict(json={"text": "a\x00b"}),
    }
    for name, kwargs in cases.items():
        r = client.post(url, **kwargs)  # type: ignore[arg-type]
        assert 400 <= r.status_code < 500, name
        err = r.json()["error"]
        assert err["code"] and err["message"], name
    assert _count_messages(engine) == before
    assert fake_rasa.calls == []


def test_exactly_4096_characters_is_accepted(client: TestClient) -> None:
    sid = _new_session(client)
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "é" * 4096})
    assert r.status_code == 200


def test_a_retried_client_message_id_is_processed_once(client: TestClient, fake_rasa) -> None:  # type: ignore[no-untyped-def]
    sid = _new_session(client)
    url = f"/api/webchat/sessions/{sid}/messages"
    first = client.post(url, json={"text": "dose?", "client_message_id": "c-1"}).json()
    again = client.post(url, json={"text": "dose?", "client_message_id": "c-1"}).json()
    assert first == again
    assert len(fake_rasa.calls) == 1
    listed = client.get(url).json()["messages"]
    assert [m["text"] for m in listed] == ["dose?", "echo: dose?"]


def test_the_same_client_message_id_in_two_sessions_is_two_messages(client: TestClient, fake_rasa) -> None:  # type: ignore[no-untyped-def]
    a, b = _new_session(client), _new_session(client)
    first = client.post(f"/api/webchat/sessions/{a}/messages",
                        json={"text": "opening hours?", "client_message_id": "7"})
    second = client.post(f"/api/webchat/sessions/{b}/messages",
                         json={"text": "storage of the pen?", "client_message_id": "7"})
    assert first.status_code == second.status_code == 200
    assert [m["text"] for m in second.json()["messages"]] == ["echo: storage of the pen?"]
    assert [c["message"] for c in fake_rasa.calls] == ["opening hours?", "storage of the pen?"]
    assert [m["text"] for m in client.get(f"/api/webchat/sessions/{b}/messages").json()["messages"]] == [
        "storage of the pen?", "echo: storage of the pen?"]


def test_a_client_message_id_reused_for_a_different_text_is_refused_and_stores_nothing(
        client: TestClient, fake_rasa) -> None:  # type: ignore[no-untyped-def]
    sid = _new_session(client)
    url = f"/api/webchat/sessions/{sid}/messages"
    assert client.post(url, json={"text": "first words", "client_message_id": "k"}).status_code == 200
    r = client.post(url, json={"text": "other words", "client_message_id": "k"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert "client_message_id" in r.json()["error"]["message"]
    r = client.post(url, json={"text": "first words", "payload": "/affirm", "client_message_id": "k"})
    assert r.status_code == 409                                   # a different payload is a different message
    assert [m["text"] for m in client.get(url).json()["messages"]] == ["first words", "echo: first words"]
    assert len(fake_rasa.calls) == 1


def test_sessions_are_not_shared(client: TestClient) -> None:
    a, b = _new_session(client), _new_session(client)
    client.post(f"/api/webchat/sessions/{a}/messages", json={"text": "secret question"})
    assert client.get(f"/api/webchat/sessions/{b}/messages").json()["messages"] == []


def test_the_page_is_served_at_root(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "/static/webchat/" in r.text
