"""Console fixtures: an app on the test database, staff users, and logged-in clients."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.clock import SystemClock
from api.db import unit_of_work
from api.settings import Settings
from api.staff import service as staff_service
from tests.fakes.rasa import FakeRasa

PASSWORD = "correct horse battery staple"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


@dataclass
class StaffAccount:
    id: str
    email: str
    password: str
    roles: list[str]


@pytest.fixture()
def fake_rasa() -> FakeRasa:
    return FakeRasa()


@pytest.fixture()
def make_app_client(open_app: Callable[..., TestClient], settings: Settings,
                    fake_rasa: FakeRasa) -> Callable[[], TestClient]:
    def make() -> TestClient:
        return open_app(settings, fake_rasa, follow_redirects=False)

    return make


@pytest.fixture()
def console(make_app_client: Callable[[], TestClient]) -> TestClient:
    return make_app_client()


@pytest.fixture()
def make_staff(engine: Engine) -> Callable[..., StaffAccount]:
    factory = sessionmaker(bind=engine, expire_on_commit=False)

    def make(*roles: str, territory: str | None = None, name: str | None = None) -> StaffAccount:
        email = f"{'-'.join(roles)}-{uuid.uuid4().hex[:10]}@halcyon.example"
        with unit_of_work(factory) as session:
            user = staff_service.create(session, email=email, password=PASSWORD, roles=list(roles), name=name,
                                        territory=territory, now=SystemClock().now())
            return StaffAccount(id=user.id, email=email, password=PASSWORD, roles=list(roles))

    return make


LOGIN_CSRF = re.compile(r'<input type="hidden" name="csrf" value="([^"]*)">')


def post_login(client: httpx.Client, form: dict[str, str]) -> httpx.Response:
    """Submit the login form as a browser does: the page first (it sets the form's CSRF cookie)."""
    page = client.get("/console/login")
    found = LOGIN_CSRF.search(page.text)
    assert found, "the login page carries no CSRF field"
    return client.post("/console/login", data={**form, "csrf": found.group(1)})


def login(client: TestClient, account: StaffAccount, totp: str | None = None) -> str:
    """Log the client in; returns the session's CSRF token (as the pages embed it)."""
    form = {"email": account.email, "password": account.password, "next": "/console"}
    if totp:
        form["totp"] = totp
    res = post_login(client, form)
    assert res.status_code == 303, res.text
    home = client.get("/console")
    assert home.status_code == 200, home.text
    found = CSRF_META.search(home.text)
    assert found and found.group(1)
    return found.group(1)


@pytest.fixture()
def logged_in(make_app_client: Callable[[], TestClient],
              make_staff: Callable[..., StaffAccount]) -> Callable[..., tuple[TestClient, StaffAccount, str]]:
    """A fresh client logged in as a new staff user with the given roles: (client, account, csrf)."""

    def make(*roles: str, territory: str | None = None) -> tuple[TestClient, StaffAccount, str]:
        account = make_staff(*roles, territory=territory)
        client = make_app_client()
        return client, account, login(client, account)

    return make
