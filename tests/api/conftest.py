from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.fakes.rasa import FakeRasa


@pytest.fixture()
def fake_rasa() -> FakeRasa:
    return FakeRasa()


@pytest.fixture()
def client(make_client: Callable[..., TestClient], fake_rasa: FakeRasa) -> TestClient:
    return make_client(fake_rasa)
