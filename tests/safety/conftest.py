"""Safety fixtures: one trained screen per session (cached artifact), conversation/message rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from api.conversations.models import Conversation, Message
from api.safety.classifier import RuleModelScreen, build_screen
from api.safety.products import Catalogue, load_catalogue
from tests.conftest import REPO

PRODUCTS_FIXTURE = Path(__file__).resolve().parent / "data" / "products.yaml"
# Same cache the app uses (keyed by training-data hash), so the model trains once per machine.
MODEL_DIR = REPO / "var" / "models"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue(PRODUCTS_FIXTURE)


@pytest.fixture(scope="session")
def screen() -> RuleModelScreen:
    s = build_screen(MODEL_DIR, PRODUCTS_FIXTURE)
    s.warm_up()
    return s


MakeConversation = Callable[..., Conversation]
MakeMessage = Callable[..., Message]


@pytest.fixture()
def make_conversation(session: Session) -> MakeConversation:
    def make(
        *, channel: str = "whatsapp", address: str | None = "whatsapp:+447700900123", state: str = "bot",
        hcp_id: str | None = None, market: str | None = "GB",
    ) -> Conversation:
        conv = Conversation(
            channel=channel, address=address, state=state, hcp_id=hcp_id, market=market,
            audience="hcp", failed_turns=0, created_at=T0,
        )
        session.add(conv)
        session.flush()
        return conv

    return make


@pytest.fixture()
def make_message(session: Session) -> MakeMessage:
    def make(conv: Conversation, body: str, *, at: datetime = T0) -> Message:
        msg = Message(
            conversation_id=conv.id, direction="in", sender_type="hcp", channel=conv.channel,
            body=body, status="received", created_at=at,
        )
        session.add(msg)
        session.flush()
        return msg

    return make
