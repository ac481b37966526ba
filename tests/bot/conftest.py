"""Helpers to run a custom action on the test database with a tracker from a recorded payload."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from api.conversations.models import Conversation
from api.rasa.actions import REGISTRY
from api.rasa.actions.protocol import ActionContext, ActionResult
from api.settings import Settings

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "rasa"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def tracker(text: str, *, intent: str, entities: list[dict[str, Any]] | None = None,
            slots: dict[str, Any] | None = None, message_id: int | None = None) -> dict[str, Any]:
    """A real Rasa 3.6 tracker (recorded) with the latest message and slots replaced."""
    body = json.loads((RECORDED / "action_answer_question.json").read_text())
    t: dict[str, Any] = copy.deepcopy(body["tracker"])
    latest = t["latest_message"]
    latest["text"] = text
    latest["intent"] = {"name": intent, "confidence": 1.0}
    latest["entities"] = entities or []
    latest["metadata"] = {"message_id": message_id} if message_id is not None else {}
    t["slots"] = {**t.get("slots", {}), **(slots or {})}
    return t


@pytest.fixture()
def conversation(session: Session) -> Conversation:
    conv = Conversation(channel="webchat", state="bot", audience="hcp", failed_turns=0, created_at=NOW)
    session.add(conv)
    session.flush()
    return conv


RunAction = Callable[..., ActionResult]


@pytest.fixture()
def run_action(session: Session, settings: Settings, conversation: Conversation) -> RunAction:
    def run(name: str, text: str = "", *, intent: str = "", conv: Conversation | None = None,
            now: datetime = NOW, **kw: Any) -> ActionResult:
        ctx = ActionContext(session=session, settings=settings, conversation=conv or conversation,
                            tracker=tracker(text, intent=intent, **kw), now=now)
        result = REGISTRY[name](ctx)
        session.flush()
        return result

    return run


def texts(result: ActionResult) -> list[str]:
    return [str(r["custom"]["text"]) for r in result.responses if "custom" in r and "text" in r["custom"]]
