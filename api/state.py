"""What one running api process holds. Built by ``create_app``; nothing at import time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from api.clock import Clock
from api.net import Network, parse_networks
from api.pipeline.worker import ConversationWorker
from api.rasa.client import RasaClient
from api.ratelimit import MemoryLimiter, RateLimiter
from api.settings import Settings


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    clock: Clock
    rasa: RasaClient
    worker: ConversationWorker
    extras: dict[str, Any] = field(default_factory=dict)
    # Proxies whose X-Forwarded-For is believed (api.net.client_address), parsed once.
    trusted_proxies: list[Network] = field(default_factory=list)
    # Web chat rate limits (api.ratelimit): in this process, or shared through Redis.
    limiter: RateLimiter = field(default_factory=MemoryLimiter)

    def __post_init__(self) -> None:
        self.trusted_proxies = parse_networks(self.settings.trusted_proxies)


def app_state(conn: HTTPConnection) -> AppState:
    """The running process's state, from a request (or WebSocket) of the app that holds it."""
    state: AppState = conn.app.state.concierge
    return state
