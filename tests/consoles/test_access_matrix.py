"""Every staff route × every role: deny by default, and reps never see medical or safety content.

The matrix is read from the routes themselves (each declares its roles with a RoleGate), so a
new console is covered the moment it is registered. Streams (``…/events``) are left out of the
crawl because they never end; their own tests check the firewall on them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.conversations import service as conversations
from api.db import unit_of_work
from api.handoffs.service import open_handoff
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.settings import Settings
from api.staff.auth import api_routes, check_routes_gated, declared_roles, is_staff_path
from api.staff.models import StaffRole
from tests.consoles.conftest import StaffAccount, login

ROLE_REFUSAL = "your role does not give access to this page"
PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


def staff_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    found = []
    for path, route in api_routes(app):
        if not is_staff_path(path):
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, path, route))
    return found


def fill(path: str, value: str) -> str:
    return PARAM.sub(value, path)


@pytest.fixture()
def role_clients(make_app_client: Callable[[], TestClient],
                 make_staff: Callable[..., StaffAccount]) -> dict[str, tuple[TestClient, str]]:
    clients = {}
    for role in StaffRole:
        client = make_app_client()
        clients[str(role)] = (client, login(client, make_staff(str(role))))
    return clients


def _call(client: TestClient, method: str, url: str, csrf: str) -> tuple[int, str]:
    headers = {"accept": "application/json", "x-csrf-token": csrf}
    res = client.request(method, url, headers=headers, json={} if method != "GET" else None)
    return res.status_code, res.text


def test_every_staff_route_declares_its_roles(console: TestClient) -> None:
    routes = staff_routes(console.app)  # type: ignore[arg-type]
    assert len(routes) >= 5
    undeclared = [(m, p) for m, p, r in routes if declared_roles(r) is None]
    assert undeclared == []


def test_an_app_with_an_ungated_staff_route_refuses_to_start() -> None:
    app = FastAPI()
    router = APIRouter()

    @router.get("/console/forgotten")
    def forgotten() -> dict[str, str]:
        return {"secret": "yes"}

    app.include_router(router)
    with pytest.raises(RuntimeError, match="/console/forgotten"):
        check_routes_gated(app)


def test_route_role_matrix(console: TestClient, role_clients: dict[str, tuple[TestClient, str]]) -> None:
    """Undeclared role → 403 from the gate; declared role → never refused by the gate; anonymous → 401."""
    checked = 0
    dummy = uuid.uuid4().hex
    # Logging out ends the session the rest of the walk needs, so it goes last.
    routes = sorted(staff_routes(console.app), key=lambda r: r[1] == "/console/logout")  # type: ignore[arg-type]
    for method, path, route in routes:
        allowed = declared_roles(route)
        assert allowed is not None
        if path.endswith("/events"):
            continue
        url = fill(path, dummy)
        if allowed:  # public routes (the login page) have no role set
            status, _ = _call(console, method, url, csrf="")
            assert status == 401, f"anonymous {method} {path} → {status}"
        for role, (client, csrf) in role_clients.items():
            status, body = _call(client, method, url, csrf)
            if not allowed or role in allowed:
                assert ROLE_REFUSAL not in body, f"{role} refused on {method} {path} though declared"
                assert status != 401, f"{role} {method} {path} → 401"
            else:
                assert status == 403 and ROLE_REFUSAL in body, f"{role} let into {method} {path}: {status}"
            checked += 1
    assert checked >= 7 * 5


@dataclass
class MedicalCanaries:
    ae_text: str
    inquiry_text: str
    ids: list[str]


@pytest.fixture()
def canaries(engine: Engine, settings: Settings) -> Iterator[MedicalCanaries]:
    """A conversation holding an adverse event and an off-label inquiry, with a rep handoff queued."""
    ae_canary = f"CANARY-AE-{uuid.uuid4().hex[:12]}"
    mi_canary = f"CANARY-MI-{uuid.uuid4().hex[:12]}"
    ae_text = f"my patient had a seizure after the second dose of cardiovex {ae_canary}"
    mi_text = f"can I give cardiovex to a 9 year old {mi_canary}"
    now = datetime.now(UTC)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with unit_of_work(factory) as s:
        conv, _token = conversations.create_webchat(s, now=now, market="GB")
        m1 = conversations.persist_inbound(s, conv, text=ae_text, now=now).message
        out1 = apply(s, conversation=conv, message=m1,
                     result=ScreenResult(adverse_event=True, ae_categories=("side_effect",), ae_score=0.99,
                                         products=("cardiovex",), serious=True, serious_terms=("seizure",)),
                     now=now)
        m2 = conversations.persist_inbound(s, conv, text=mi_text, now=now).message
        out2 = apply(s, conversation=conv, message=m2,
                     result=ScreenResult(off_label=True, products=("cardiovex",), off_label_reasons=("population",)),
                     now=now)
        handoff = open_handoff(s, conv, target="rep", reason="hcp_request", now=now)
        ids = [conv.id, handoff.id, str(m1.id), str(m2.id), out1.adverse_event_id or "", out2.medical_inquiry_id or ""]
    yield MedicalCanaries(ae_text=ae_canary, inquiry_text=mi_canary, ids=[i for i in ids if i])


def test_reps_never_read_medical_or_safety_content_even_by_guessing_ids(
        console: TestClient, canaries: MedicalCanaries,
        logged_in: Callable[..., tuple[TestClient, StaffAccount, str]]) -> None:
    client, _account, _csrf = logged_in("rep")
    fetched = 0
    for method, path, _route in staff_routes(console.app):  # type: ignore[arg-type]
        if method != "GET" or path.endswith("/events"):
            continue
        params = PARAM.findall(path)
        urls = [path] if not params else [fill(path, i) for i in canaries.ids]
        for url in urls:
            for accept in ("application/json", "text/html"):
                res = client.get(url, headers={"accept": accept})
                fetched += 1
                assert canaries.ae_text not in res.text, f"AE content leaked to a rep via {url}"
                assert canaries.inquiry_text not in res.text, f"inquiry content leaked to a rep via {url}"
    assert fetched > 0
