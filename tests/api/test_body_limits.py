"""Anonymous endpoints refuse oversized bodies while they stream, not after holding them in memory.

Served by a real uvicorn, so a chunked upload is really chunked: the test counts how much of an
endless body the server pulled before it answered 413.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from api.app import create_app
from api.pipeline.turn import null_safety_hook
from api.settings import Settings
from tests.conftest import LiveServer, free_port
from tests.fakes.rasa import FakeRasa

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def live(engine: Engine, tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[str]:
    settings = Settings(database_url=database_url, var_dir=tmp_path_factory.mktemp("var"),
                        rasa_url="http://127.0.0.1:9", twilio_auth_token="secret", twilio_account_sid="AC1",
                        twilio_whatsapp_from="whatsapp:+15550000000", whatsapp_worker="process")
    app = create_app(settings, engine=engine, safety_hook=null_safety_hook,
                     rasa_transport=FakeRasa().transport(), warm_knowledge=False)
    server = LiveServer(app, free_port()).start()
    yield server.url
    server.stop()


class Endless:
    """A request body that never ends, counting what the server pulled."""

    def __init__(self) -> None:
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < 512 * 1024 * 1024:  # a safety stop far past any limit
            self.sent += CHUNK
            yield b"a" * CHUNK


@pytest.mark.parametrize("path", ["/api/webchat/sessions/x/messages", "/webhooks/twilio/whatsapp", "/console/login",
                                  "/rasa/webhook", "/api/webchat/sessions"])
def test_a_chunked_body_without_end_is_never_read_past_the_limit(live: str, path: str) -> None:
    body = Endless()
    with httpx.Client(base_url=live, timeout=30) as client:
        try:
            r = client.post(path, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
        except httpx.HTTPError:
            r = None  # the server may close the connection while the client is still sending
    if r is not None and path == "/rasa/webhook":      # refused on its token before any body is read
        assert r.status_code == 403
    elif r is not None and path != "/api/webchat/sessions":  # that route never reads a body at all
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "too_large"
    assert body.sent <= 20 * 1024 * 1024, f"the server read {body.sent} bytes before refusing"


def _raw_post(url: str, path: str, declared: int) -> tuple[int, dict[str, object]]:
    """A request that declares a huge body and sends a little: the answer must not wait for the rest."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {declared}\r\n\r\n".encode() + b"{" * 1024)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.mark.parametrize("path", ["/api/webchat/sessions/x/messages", "/webhooks/twilio/whatsapp",
                                  "/console/content/library", "/console/login"])
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(live: str, path: str) -> None:
    status, body = _raw_post(live, path, 300 * 1024 * 1024)
    assert status == 413
    assert str(body["error"]["message"]).startswith("request body too large")  # type: ignore[index]


def test_a_message_within_the_limit_still_goes_through(live: str) -> None:
    with httpx.Client(base_url=live, timeout=30) as client:
        sid = client.post("/api/webchat/sessions").json()["session_id"]
        r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "é" * 4096})
    assert r.status_code == 200
