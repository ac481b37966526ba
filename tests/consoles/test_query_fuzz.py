"""Every query parameter of every GET route, with hostile values: a clear 4xx or an answer, never a 500.

The routes and their parameters are read from the app, so a new route is covered when it is
registered. Staff routes are called by a member of a role they admit; others anonymously. Endless
streams (``…/events``) are left out of the crawl (a valid cursor would open a stream that never
ends); their cursor bounds are checked on the parameter itself instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.conversations import service as conversations
from api.db import unit_of_work
from api.handoffs.service import open_handoff
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.staff.auth import api_routes, declared_roles
from api.staff.models import StaffRole
from tests.consoles.conftest import StaffAccount, login

PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")
HOSTILE = ["99999999999999999999", "-99999999999999999999", "9" * 400, "1e308", "NaN", "-1", "0x10", "",
           " ", "\x00", "%00", "💊" * 50, "a" * 5000, "[]", "{}", "null", "true", "../../etc/passwd",
           "<script>alert(1)</script>", "' OR 1=1 --", "2026-13-45", "9999-12-31T99:99"]
NUMERIC = ["99999999999999999999", "-99999999999999999999", "9" * 400, "1e308", "NaN"]


def _query_fields(dependant: Dependant) -> list[ModelField]:
    """The query parameters of a route and of every dependency it uses."""
    return [*dependant.query_params, *(f for d in dependant.dependencies for f in _query_fields(d))]


def _query_params(route: APIRoute) -> list[str]:
    return sorted({p.alias for p in _query_fields(route.dependant)})


def _get_routes(app: object) -> list[tuple[str, APIRoute]]:
    return [(path, route) for path, route in api_routes(app)  # type: ignore[arg-type]
            if "GET" in (route.methods or ()) and _query_params(route)]


def test_the_crawl_finds_the_cursor_and_filter_parameters(console: TestClient) -> None:
    found = {(path, name) for path, route in _get_routes(console.app) for name in _query_params(route)}
    assert ("/api/webchat/messages", "after") in found
    assert len(found) >= 10


@pytest.fixture()
def real_ids(engine: Engine) -> list[str]:
    """Ids of real rows (a conversation with an adverse event, an inquiry and a queued handoff), so the
    crawl reaches the code behind the 404s."""
    now = datetime.now(UTC)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with unit_of_work(factory) as s:
        conv, _token = conversations.create_webchat(s, now=now, market="GB")
        m1 = conversations.persist_inbound(s, conv, text="rash after the second dose of cardiovex", now=now).message
        out1 = apply(s, conversation=conv, message=m1,
                     result=ScreenResult(adverse_event=True, ae_categories=("side_effect",), ae_score=0.99,
                                         products=("cardiovex",)), now=now)
        m2 = conversations.persist_inbound(s, conv, text="cardiovex for a child?", now=now).message
        out2 = apply(s, conversation=conv, message=m2,
                     result=ScreenResult(off_label=True, products=("cardiovex",), off_label_reasons=("population",)),
                     now=now)
        handoff = open_handoff(s, conv, target="rep", reason="hcp_request", now=now)
        return [i for i in (handoff.id, conv.id, out1.adverse_event_id, out2.medical_inquiry_id, str(m1.id)) if i]


def test_no_query_parameter_value_makes_a_route_fail(
        console: TestClient, make_app_client: Callable[[], TestClient],
        make_staff: Callable[..., StaffAccount], real_ids: list[str]) -> None:
    everyone = make_app_client()
    csrf = login(everyone, make_staff(*[str(r) for r in StaffRole]))   # one member of every role
    secret = console.post("/api/webchat/sessions").json()["session_id"]
    headers = {"accept": "application/json", "x-csrf-token": csrf, "X-Chat-Session": secret}
    failures: list[str] = []
    calls = 0
    for path, route in _get_routes(console.app):
        if path.endswith("/events"):
            continue
        client = everyone if declared_roles(route) else console
        urls = [PARAM.sub(i, path) for i in real_ids] if PARAM.search(path) else [path]
        for n, url in enumerate(urls):
            for name in _query_params(route):
                for value in HOSTILE if n == 0 else NUMERIC:
                    calls += 1
                    try:
                        r = client.get(url, params={name: value}, headers=headers)
                    except Exception as exc:  # the test client re-raises what the server did not handle
                        failures.append(f"GET {url}?{name}={value[:30]!r} -> {type(exc).__name__}: {exc}")
                        continue
                    if r.status_code >= 500:
                        failures.append(f"GET {url}?{name}={value[:30]!r} -> {r.status_code}")
    assert calls > 200
    assert failures == []


def test_every_stream_cursor_is_bounded_like_a_message_id(console: TestClient) -> None:
    for path, route in _get_routes(console.app):
        if not path.endswith("/events"):
            continue
        for param in _query_fields(route.dependant):
            if param.alias == "after":
                bounds = {type(m).__name__: m for m in param.field_info.metadata}
                assert "Le" in bounds and bounds["Le"].le <= 2**63 - 1, path


@pytest.mark.parametrize("after", ["99999999999999999999", "-5"])
def test_a_stream_refuses_an_impossible_cursor_at_once(console: TestClient, after: str) -> None:
    secret = console.post("/api/webchat/sessions").json()["session_id"]
    r = console.get(f"/api/webchat/sessions/{secret}/events", params={"after": after})
    assert r.status_code == 422
