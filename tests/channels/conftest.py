"""Fixtures for the WhatsApp channel: the fake Twilio on loopback, signed requests, apps."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.clock import Clock
from api.db import make_session_factory
from api.settings import Settings
from tests.conftest import LiveServer, free_port
from tests.fakes.rasa import FakeRasa
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, WHATSAPP_FROM, FakeTwilio, TwilioSigner

PUBLIC_URL = "https://concierge.example.com"


@pytest.fixture(scope="module")
def twilio_server() -> Iterator[tuple[FakeTwilio, str]]:
    fake = FakeTwilio(hang_seconds=0.6)
    server = LiveServer(fake.app(), free_port()).start()
    yield fake, server.url
    server.stop()


@pytest.fixture()
def fake_twilio(twilio_server: tuple[FakeTwilio, str]) -> FakeTwilio:
    fake = twilio_server[0]
    fake.heal()
    fake.sent.clear()
    fake.failures.clear()
    return fake


@pytest.fixture()
def twilio_url(twilio_server: tuple[FakeTwilio, str]) -> str:
    return twilio_server[1]


@pytest.fixture()
def wa_settings(settings: Settings, twilio_url: str) -> Settings:
    """Twilio configured, but no sender number: the app does not start its own dispatcher."""
    return settings.model_copy(update={
        "public_url": PUBLIC_URL, "twilio_account_sid": ACCOUNT_SID, "twilio_auth_token": AUTH_TOKEN,
        "twilio_api_url": twilio_url, "twilio_whatsapp_from": "",
    })


@pytest.fixture()
def signer() -> TwilioSigner:
    return TwilioSigner(PUBLIC_URL)


@pytest.fixture()
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def new_number() -> str:
    return f"whatsapp:+1555{random.randrange(10**7):07d}"


@pytest.fixture()
def make_wa_client(open_app: Callable[..., TestClient], wa_settings: Settings) -> Callable[..., TestClient]:
    def make(rasa: FakeRasa | None = None, clock: Clock | None = None, **overrides: object) -> TestClient:
        return open_app(wa_settings.model_copy(update=overrides) if overrides else wa_settings, rasa, clock=clock)

    return make


def ingested(client: TestClient, timeout: float = 30.0) -> None:
    """Wait until the app's WhatsApp ingester has turned every stored webhook into a message."""
    ingester = client.app.state.concierge.whatsapp_ingester  # type: ignore[attr-defined]
    client.portal.call(ingester.idle, timeout)  # type: ignore[union-attr]


__all__ = ["PUBLIC_URL", "WHATSAPP_FROM", "ingested", "new_number"]
