from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.pipeline.turn import null_safety_hook
from api.settings import Settings
from tests.fakes.rasa import FakeRasa


@pytest.fixture()
def fake_rasa() -> FakeRasa:
    return FakeRasa()


@pytest.fixture()
def make_client(engine: Engine, settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """Build an app on the test database with a fake Rasa; closes every client at the end."""
    clients: list[TestClient] = []

    def make(rasa: FakeRasa, **overrides: object) -> TestClient:
        s = settings.model_copy(update=overrides) if overrides else settings
        app = create_app(s, engine=engine, safety_hook=null_safety_hook,
                         rasa_transport=rasa.transport(), warm_knowledge=False)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture()
def client(make_client: Callable[..., TestClient], fake_rasa: FakeRasa) -> TestClient:
    return make_client(fake_rasa)
