"""Rasa stopped, or hanging on a real socket: the HCP still gets a safe answer in time."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import Engine

from api.app import create_app
from api.conversations.copy import RASA_FALLBACK
from api.pipeline.turn import null_safety_hook
from api.settings import Settings
from tests.conftest import LiveServer, free_port


def _turn(engine: Engine, settings: Settings, rasa_url: str) -> tuple[dict[str, object], float]:
    s = settings.model_copy(update={"rasa_url": rasa_url, "rasa_timeout": 1.5})
    server = LiveServer(create_app(s, engine=engine, safety_hook=null_safety_hook, warm_knowledge=False),
                        free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            sid = c.post("/api/webchat/sessions").json()["session_id"]
            started = time.monotonic()
            r = c.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "hello"})
            elapsed = time.monotonic() - started
            assert r.status_code == 200
            (reply,) = r.json()["messages"]
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["rasa"]["ok"] is False
            return reply, elapsed
    finally:
        server.stop()


def test_rasa_stopped_gets_the_fallback_within_the_deadline(engine: Engine, settings: Settings) -> None:
    reply, elapsed = _turn(engine, settings, f"http://127.0.0.1:{free_port()}")
    assert reply["text"] == RASA_FALLBACK
    assert elapsed < 1.5 + 2.0


def test_a_hanging_rasa_gets_the_fallback_at_the_deadline(engine: Engine, settings: Settings,
                                                          hanging_server: str) -> None:
    reply, elapsed = _turn(engine, settings, hanging_server)
    assert reply["text"] == RASA_FALLBACK
    assert 1.4 <= elapsed < 1.5 + 2.0
