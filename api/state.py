"""What one running api process holds. Built by ``create_app``; nothing at import time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from api.clock import Clock
from api.rasa.client import RasaClient
from api.settings import Settings
from api.worker import ConversationWorker


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    clock: Clock
    rasa: RasaClient
    worker: ConversationWorker
    extras: dict[str, Any] = field(default_factory=dict)


def app_state(conn: HTTPConnection) -> AppState:
    """The running process's state, from a request (or WebSocket) of the app that holds it."""
    state: AppState = conn.app.state.concierge
    return state
