"""The app's state is typed fields, not a dict of extras: the safety hook says whether its screen
is ready, and asking for the live relay before it runs is a clear error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker

from api.app import ScreenHook
from api.clock import FakeClock
from api.db import make_engine
from api.pipeline.worker import ConversationWorker
from api.rasa.client import RasaClient
from api.settings import Settings
from api.state import AppState


class _Screen:
    def __init__(self) -> None:
        self.loaded = False
        self.seen: list[str] = []

    def ready(self) -> bool:
        return self.loaded

    def screen(self, text: str, context: Any = None) -> str:
        self.seen.append(text)
        return f"screened:{text}:{context}"


class _Msg:
    body = "my patient had a rash"


def test_the_screen_hook_applies_the_screen_and_reports_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    import api.safety.context

    # What the bot last asked (a form question) goes to the screen with the text.
    monkeypatch.setattr(api.safety.context, "screen_context", lambda session, conv, msg: "slot:name")
    screen = _Screen()
    calls: list[dict[str, Any]] = []

    def apply(session: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return "outcome"

    hook = ScreenHook(screen, apply, review_rate=0.05)  # type: ignore[arg-type]
    assert hook.ready() is False
    screen.loaded = True
    assert hook.ready() is True
    now = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    msg = _Msg()
    assert hook(None, "conv", msg, now) == "outcome"  # type: ignore[arg-type]
    assert screen.seen == ["my patient had a rash"]
    # the share of unflagged messages drawn for the blinded AE review goes with it
    assert calls == [{"conversation": "conv", "message": msg, "result": "screened:my patient had a rash:slot:name",
                      "now": now, "review_rate": 0.05}]


def test_the_live_relay_must_be_running_to_be_used() -> None:
    engine = make_engine("sqlite://")
    try:
        factory = sessionmaker(bind=engine)
        state = AppState(settings=Settings(), engine=engine, session_factory=factory, clock=FakeClock(),
                         rasa=RasaClient("http://127.0.0.1:9", "", 1.0),
                         worker=ConversationWorker(None, factory))  # type: ignore[arg-type]
        assert state.relay is None and state.whatsapp_dispatcher is None and state.cx_topics_cache == {}
        with pytest.raises(RuntimeError, match="live relay is not running"):
            state.live_relay()
    finally:
        engine.dispose()
