"""The web chat session secret never sits in a URL, and never in a log line.

It travels in the ``X-Chat-Session`` header; the live stream (EventSource cannot send headers) is
authenticated by an HttpOnly cookie scoped to that one session's stream path. The older path form
still answers during its deprecation window, and the access log masks it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.pipeline.turn import null_safety_hook
from api.settings import Settings
from tests.conftest import LiveServer, free_port
from tests.fakes.rasa import FakeRasa

HEADER = "X-Chat-Session"


def _session(client: TestClient | httpx.Client) -> tuple[str, str]:
    r = client.post("/api/webchat/sessions")
    assert r.status_code == 201
    return r.json()["session_id"], r.json()["stream_url"]


def test_messages_are_posted_and_listed_with_the_secret_in_a_header(client: TestClient) -> None:
    secret, _ = _session(client)
    r = client.post("/api/webchat/messages", json={"text": "hello there"}, headers={HEADER: secret})
    assert r.status_code == 200 and [m["text"] for m in r.json()["messages"]] == ["echo: hello there"]
    listed = client.get("/api/webchat/messages", headers={HEADER: secret}).json()["messages"]
    assert [m["text"] for m in listed] == ["hello there", "echo: hello there"]


def test_without_the_header_there_is_nothing_to_read_or_send(client: TestClient) -> None:
    for r in (client.get("/api/webchat/messages"), client.post("/api/webchat/messages", json={"text": "hi"})):
        assert r.status_code == 401 and "X-Chat-Session" in r.json()["error"]["message"]
    r = client.get("/api/webchat/messages", headers={HEADER: "not-a-session"})
    assert r.status_code == 404


def test_the_stream_cookie_is_httponly_strict_and_scoped_to_its_own_session(client: TestClient) -> None:
    r = client.post("/api/webchat/sessions")
    cookie = r.headers["set-cookie"]
    stream_url = r.json()["stream_url"]
    assert r.json()["session_id"] not in stream_url
    for attribute in ("HttpOnly", "SameSite=strict", f"Path={stream_url}"):
        assert attribute.lower() in cookie.lower()


def test_a_stream_opens_with_its_own_cookie_and_not_with_another_sessions(client: TestClient) -> None:
    a_secret, a_stream = _session(client)
    b_secret, _b_stream = _session(client)
    client.post("/api/webchat/messages", json={"text": "for the stream"}, headers={HEADER: a_secret})
    client.cookies.clear()
    assert client.get(f"{a_stream}/events").status_code == 401                 # no cookie at all
    client.cookies.set("concierge_chat", b_secret, path=a_stream)
    assert client.get(f"{a_stream}/events").status_code == 404                 # B's cookie, A's stream
    client.cookies.clear()
    client.cookies.set("concierge_chat", a_secret, path=a_stream)
    with client.stream("GET", f"{a_stream}/events") as stream:
        assert stream.status_code == 200
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "message":
                assert json.loads(line[5:])["body"] == "for the stream"
                break


def test_a_restored_session_gets_its_stream_cookie_again(client: TestClient) -> None:
    secret, stream_url = _session(client)
    client.cookies.clear()
    r = client.post("/api/webchat/session/stream", headers={HEADER: secret})
    assert r.status_code == 200 and r.json()["stream_url"] == stream_url
    assert f"path={stream_url}" in r.headers["set-cookie"].lower()
    assert client.post("/api/webchat/session/stream").status_code == 401


@pytest.mark.parametrize("after", ["99999999999999999999", "-1", "1e3", "x"])
def test_an_impossible_cursor_is_a_clear_422_not_a_server_error(client: TestClient, after: str) -> None:
    secret, _ = _session(client)
    for path in ("/api/webchat/messages", f"/api/webchat/sessions/{secret}/messages"):
        r = client.get(path, params={"after": after}, headers={HEADER: secret})
        assert r.status_code == 422, (path, r.text)


@pytest.fixture()
def logged_server(engine: Engine, settings: Settings) -> Iterator[str]:
    app = create_app(settings, engine=engine, safety_hook=null_safety_hook, rasa_transport=FakeRasa().transport(),
                     warm_knowledge=False)
    server = LiveServer(app, free_port())
    server.server.config.access_log = True
    server.server.config.log_level = "info"
    yield server.start().url
    server.stop()


def test_no_secret_reaches_the_access_log_even_on_the_deprecated_paths(
        logged_server: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="uvicorn.access"), httpx.Client(base_url=logged_server) as http:
        secret, _stream_url = _session(http)
        http.post("/api/webchat/messages", json={"text": "a"}, headers={HEADER: secret})
        http.post(f"/api/webchat/sessions/{secret}/messages", json={"text": "b"})
        http.get(f"/api/webchat/sessions/{secret}/messages", params={"after": 0})
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(lines) >= 4, lines
    assert not [line for line in lines if secret in line]
    assert any("/api/webchat/sessions/[secret]/messages" in line for line in lines)
