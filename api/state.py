"""What one running api process holds. Built by ``create_app``; nothing at import time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from api.channels.whatsapp.ingest import Ingester
from api.clock import Clock
from api.net import Network, parse_networks
from api.outbox_worker import OutboxDispatcher
from api.pipeline.worker import ConversationWorker
from api.rasa.client import RasaClient
from api.ratelimit import MemoryLimiter, RateLimiter
from api.relay.stream import Relay
from api.settings import Settings
from feedback.kpis import KpiFilter, Topics
from knowledge.admin import IndexRefresher


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    clock: Clock
    rasa: RasaClient
    worker: ConversationWorker
    # Live relay to staff and web chat streams (api.relay.stream), started in the lifespan.
    relay: Relay | None = None
    # Readiness probes (/readyz): the safety screen and the knowledge index, once they can tell.
    safety_ready: Callable[[], bool] | None = None
    knowledge_ready: Callable[[], bool] | None = None
    # WhatsApp after the ack in this process (CONCIERGE_WHATSAPP_WORKER=inline); None otherwise.
    whatsapp_dispatcher: OutboxDispatcher | None = None
    whatsapp_ingester: Ingester | None = None
    # The content console's background index refresher, created on first use.
    knowledge_refresher: IndexRefresher | None = None
    # The CX dashboard's top-unanswered topics per filter: (fresh until, topics).
    cx_topics_cache: dict[KpiFilter, tuple[float, Topics]] = field(default_factory=dict)
    # Proxies whose X-Forwarded-For is believed (api.net.client_address), parsed once.
    trusted_proxies: list[Network] = field(default_factory=list)
    # Web chat rate limits (api.ratelimit): in this process, or shared through Redis.
    limiter: RateLimiter = field(default_factory=MemoryLimiter)

    def __post_init__(self) -> None:
        self.trusted_proxies = parse_networks(self.settings.trusted_proxies)

    def live_relay(self) -> Relay:
        """The live relay; it runs for the whole life of the app."""
        if self.relay is None:
            raise RuntimeError("the live relay is not running")
        return self.relay


def app_state(conn: HTTPConnection) -> AppState:
    """The running process's state, from a request (or WebSocket) of the app that holds it."""
    state: AppState = conn.app.state.concierge
    return state
