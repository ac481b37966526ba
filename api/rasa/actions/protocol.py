"""Rasa's action-server protocol, served by the api itself (no rasa_sdk: it pins pydantic 1).

Request:  {"next_action", "sender_id", "tracker": {...}, "domain": {...}, "version"}
Response: {"events": [...], "responses": [{"text"|"custom"|"buttons"...}]}
Errors:   400 {"action_name", "error"} rejects the action; 404 for an unknown action.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.conversations.models import Conversation
from api.settings import Settings


class ActionCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    next_action: str = Field(min_length=1)
    sender_id: str = Field(min_length=1)
    tracker: dict[str, Any]
    domain: dict[str, Any] | None = None
    version: str | None = None


class ActionResponse(BaseModel):
    events: list[dict[str, Any]] = Field(default_factory=list)
    responses: list[dict[str, Any]] = Field(default_factory=list)


class ActionRejected(Exception):
    def __init__(self, action_name: str, error: str) -> None:
        super().__init__(error)
        self.action_name = action_name
        self.error = error


@dataclass
class ActionContext:
    session: Session
    settings: Settings
    conversation: Conversation
    tracker: dict[str, Any]
    now: datetime

    @property
    def latest_text(self) -> str:
        latest = self.tracker.get("latest_message") or {}
        return str(latest.get("text") or "")

    @property
    def latest_intent(self) -> str | None:
        intent = (self.tracker.get("latest_message") or {}).get("intent") or {}
        name = intent.get("name")
        return str(name) if name else None

    @property
    def message_id(self) -> int | None:
        meta = (self.tracker.get("latest_message") or {}).get("metadata") or {}
        mid = meta.get("message_id")
        return int(mid) if isinstance(mid, int) else None

    def entity(self, name: str) -> str | None:
        for ent in (self.tracker.get("latest_message") or {}).get("entities") or []:
            if ent.get("entity") == name and ent.get("value"):
                return str(ent["value"])
        return None

    def slot(self, name: str) -> Any:
        return (self.tracker.get("slots") or {}).get(name)


@dataclass
class ActionResult:
    responses: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


Action = Callable[[ActionContext], ActionResult]


def text(message: str, buttons: list[dict[str, str]] | None = None, **custom: Any) -> dict[str, Any]:
    """A response the api understands: our own envelope inside Rasa's ``custom``."""
    body: dict[str, Any] = {"text": message, "buttons": buttons or []}
    body.update(custom)
    return {"custom": body}


def slot_set(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "name": name, "value": value}
