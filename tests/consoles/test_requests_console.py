"""The service-request console over HTTP: pages and JSON, roles, clear refusals, and the HCP
seeing the outcome in web chat and rating it (here with Rasa down: the api records the score)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from api.app import create_app
from api.audit.models import AuditEvent
from api.clock import FakeClock
from api.conversations import service as conversations
from api.db import unit_of_work
from api.pipeline.turn import null_safety_hook
from api.requests import service as requests
from api.requests.models import ServiceRequest
from api.settings import Settings
from feedback.models import SurveyResponse
from tests.consoles.conftest import StaffAccount, login
from tests.fakes.rasa import FakeRasa

JSON = {"accept": "application/json"}


class World:
    def __init__(self, engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> None:
        self.engine, self.settings, self.make_staff = engine, settings, make_staff
        self.clock = FakeClock()
        self.rasa = FakeRasa(mode="error")  # Rasa down: CSAT answers are recorded by the api
        self.clients: list[TestClient] = []
        self.factory = sessionmaker(bind=engine, expire_on_commit=False)

    def client(self) -> TestClient:
        app = create_app(self.settings, engine=self.engine, clock=self.clock, safety_hook=null_safety_hook,
                         rasa_transport=self.rasa.transport(), warm_knowledge=False)
        c = TestClient(app, follow_redirects=False)
        c.__enter__()
        self.clients.append(c)
        return c

    def staff(self, *roles: str, territory: str | None = None) -> tuple[TestClient, str]:
        c = self.client()
        return c, login(c, self.make_staff(*roles, territory=territory))

    def chat_with_request(self, kind: str = "samples", **details: str) -> tuple[TestClient, str, str]:
        """An HCP's web chat session with a request recorded in it: (client, session token, request id)."""
        c = self.client()
        token = c.post("/api/webchat/sessions").json()["session_id"]
        with unit_of_work(self.factory) as s:
            conv = conversations.get_by_session_token(s, token)
            row = requests.create_request(s, conv, kind=kind, details=details or {"sample_quantity": "2 packs"},
                                          product="respizan", now=self.clock.now(),
                                          team="msl" if kind == "meeting" else None)
            return c, token, row.id


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> Iterator[World]:
    w = World(engine, settings, make_staff)
    yield w
    for c in w.clients:
        c.__exit__(None, None, None)


def _post(client: TestClient, url: str, csrf: str, body: Any) -> Any:
    return client.post(url, json=body, headers={**JSON, "x-csrf-token": csrf})


def _messages(chat: TestClient, token: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = chat.get(f"/api/webchat/sessions/{token}/messages").json()["messages"]
    return found


def test_a_rep_resolves_over_json_and_the_hcp_is_told_and_rates_it(world: World) -> None:
    chat, token, rid = world.chat_with_request()
    rep, csrf = world.staff("rep")
    listed = rep.get("/api/staff/requests", headers=JSON).json()["requests"]
    entry = next(r for r in listed if r["id"] == rid)
    assert entry["status"] == "open" and entry["due"] == "on_time" and entry["label"] == "sample request"

    res = _post(rep, f"/api/staff/requests/{rid}/notes", csrf, {"text": "Stock checked, shipping today"})
    assert res.status_code == 200, res.text
    res = _post(rep, f"/api/staff/requests/{rid}/status", csrf, {"status": "in_progress", "expected_status": "open"})
    assert res.status_code == 200 and res.json()["status"] == "in_progress" and res.json()["message_id"] is None
    world.clock.advance(hours=3)
    res = _post(rep, f"/api/staff/requests/{rid}/status", csrf, {"status": "resolved"})
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["status"] == "resolved" and out["message_id"] and out["survey_id"]

    told = [m for m in _messages(chat, token) if m["id"] == out["message_id"]]
    assert told and "has been completed" in told[0]["text"]
    assert [b["title"] for b in told[0]["buttons"]] == ["1", "2", "3", "4", "5"]
    reply = chat.post(f"/api/webchat/sessions/{token}/messages",
                      json={"text": "5", "payload": '/give_score{"score": "5"}'})
    assert reply.status_code == 200, reply.text
    assert any("Thank you for the rating" in m["text"] for m in reply.json()["messages"])
    with world.factory() as s:
        survey = s.get(SurveyResponse, out["survey_id"])
        assert survey is not None and survey.score == 5 and survey.service_request_id == rid

    detail = rep.get(f"/api/staff/requests/{rid}", headers=JSON).json()
    assert detail["csat"] == 5 and detail["allowed"] == [] and detail["notes"][0]["text"].startswith("Stock")
    assert [t["action"] for t in detail["trail"]] == [
        "service_request.created", "service_request.note_added", "service_request.in_progress",
        "service_request.resolved"]
    assert rid not in {r["id"] for r in rep.get("/api/staff/requests", headers=JSON).json()["requests"]}
    closed = rep.get("/api/staff/requests?status=closed", headers=JSON).json()["requests"]
    assert rid in {r["id"] for r in closed}


def test_illegal_moves_and_bad_input_get_clear_409_and_422_and_are_audited(world: World) -> None:
    _chat, _token, rid = world.chat_with_request()
    rep, csrf = world.staff("rep")
    cases = [
        ({"status": "done"}, 422, "unknown status 'done'"),
        ({"status": "cannot_fulfil"}, 422, "say why the request cannot be fulfilled"),
        ({"status": "open"}, 409, "it can move to in progress, resolved, cannot fulfil, not open"),
        ({"status": "resolved", "extra": 1}, 422, "extra"),
        ({"reason": "no status"}, 422, "status"),
    ]
    for body, code, words in cases:
        res = _post(rep, f"/api/staff/requests/{rid}/status", csrf, body)
        assert res.status_code == code, (body, res.text)
        assert words in res.json()["error"]["message"], res.text
    res = rep.post(f"/api/staff/requests/{rid}/status", content=b"not json", headers={**JSON, "x-csrf-token": csrf})
    assert res.status_code == 422 and "not valid JSON" in res.text
    assert _post(rep, f"/api/staff/requests/{rid}/notes", csrf, {"text": "  "}).status_code == 422
    assert _post(rep, f"/api/staff/requests/{rid}/status", csrf,
                 {"status": "cannot_fulfil", "reason": "Product out of stock"}).status_code == 200
    res = _post(rep, f"/api/staff/requests/{rid}/status", csrf, {"status": "resolved"})
    assert res.status_code == 409 and "a closed request cannot change" in res.json()["error"]["message"]
    assert res.json()["error"]["detail"]["status"] == "cannot_fulfil"
    with world.factory() as s:
        refused = s.execute(select(AuditEvent).where(AuditEvent.subject_id == rid,
                                                     AuditEvent.action == "service_request.status_change_refused")
                            ).scalars().all()
        assert {e.data["code"] for e in refused} == {"invalid_input", "conflict"}
        row = s.get(ServiceRequest, rid)
        assert row is not None and row.status == "cannot_fulfil" and row.outcome_reason == "Product out of stock"
    res = _post(rep, f"/api/staff/requests/{uuid.uuid4().hex}/status", csrf, {"status": "resolved"})
    assert res.status_code == 404


def test_roles_outside_the_request_kind_are_refused_and_other_roles_never_get_in(world: World) -> None:
    _chat, _token, literature = world.chat_with_request("literature", literature_topic="paediatric data")
    rep, rep_csrf = world.staff("rep")
    assert rep.get(f"/api/staff/requests/{literature}", headers=JSON).status_code == 403
    assert _post(rep, f"/api/staff/requests/{literature}/status", rep_csrf, {"status": "resolved"}).status_code == 403
    assert literature not in {r["id"] for r in rep.get("/api/staff/requests", headers=JSON).json()["requests"]}
    msl, _ = world.staff("msl")
    assert msl.get(f"/api/staff/requests/{literature}", headers=JSON).json()["details"] == {
        "literature_topic": "paediatric data"}
    for role in ("safety", "cx_analyst", "content_admin", "admin"):
        other, _ = world.staff(role)
        res = other.get("/console/requests", headers={"accept": "text/html"})
        assert res.status_code == 403 and "Requests" not in res.text.split("<main>")[0], role
    anonymous = world.client()
    res = anonymous.get("/console/requests")
    assert res.status_code in (302, 303, 307) and "/console/login" in res.headers["location"]


def test_the_pages_list_open_one_add_a_note_and_resolve_with_forms(world: World) -> None:
    chat, token, rid = world.chat_with_request("meeting", meeting_with="an MSL", preferred_times="Tue pm")
    msl, csrf = world.staff("msl")
    page = msl.get("/console/requests")
    assert page.status_code == 200 and f'href="/console/requests/{rid}"' in page.text
    assert 'href="/console/requests" class="active"' in page.text
    detail = msl.get(f"/console/requests/{rid}")
    assert detail.status_code == 200 and "Tue pm" in detail.text and "Mark in progress" in detail.text
    res = msl.post(f"/console/requests/{rid}/note", data={"csrf_token": csrf, "text": "Booked Dr Ali's diary"})
    assert res.status_code == 303
    res = msl.post(f"/console/requests/{rid}/status",
                   data={"csrf_token": csrf, "status": "cannot_fulfil", "reason": "", "expected_status": "open"})
    assert res.status_code == 422 and "say why" in res.text
    res = msl.post(f"/console/requests/{rid}/status",
                   data={"csrf_token": csrf, "status": "resolved", "expected_status": "open"})
    assert res.status_code == 303 and res.headers["location"].endswith("?done=resolved")
    after = msl.get(res.headers["location"])
    assert "the HCP has been told" in after.text and "Booked Dr Ali" in after.text
    assert "Mark in progress" not in after.text
    res = msl.post(f"/console/requests/{rid}/status",
                   data={"csrf_token": csrf, "status": "resolved", "expected_status": "open"})
    assert res.status_code == 409 and "already resolved" in res.text
    res = msl.post(f"/console/requests/{rid}/status", data={"status": "resolved"})
    assert res.status_code == 403  # no CSRF token
    assert any("meeting request" in m["text"] and "completed" in m["text"] for m in _messages(chat, token))


def test_a_rating_tapped_while_a_person_has_the_chat_is_still_recorded(world: World) -> None:
    from api.conversations.models import Conversation
    from api.handoffs.service import open_handoff

    chat, token, rid = world.chat_with_request("contact_update", new_contact_details="new@clinic.example")
    with unit_of_work(world.factory) as s:
        row = s.get(ServiceRequest, rid)
        assert row is not None
        conv = s.get(Conversation, row.conversation_id)
        assert conv is not None
        open_handoff(s, conv, target="rep", reason="hcp_request", now=world.clock.now())
    rep, csrf = world.staff("rep")
    out = _post(rep, f"/api/staff/requests/{rid}/status", csrf, {"status": "resolved"}).json()
    reply = chat.post(f"/api/webchat/sessions/{token}/messages",
                      json={"text": "3", "payload": '/give_score{"score": "3"}'})
    assert reply.status_code == 200, reply.text
    assert any("Thank you for the rating" in m["text"] for m in reply.json()["messages"])
    with world.factory() as s:
        survey = s.get(SurveyResponse, out["survey_id"])
        assert survey is not None and survey.score == 3
        conv_after = s.get(Conversation, survey.conversation_id)
        assert conv_after is not None and conv_after.state == "queued"  # still waiting for the person


def test_a_request_stored_with_free_text_as_its_product_shows_no_product(world: World) -> None:
    _, _, rid = world.chat_with_request()
    with unit_of_work(world.factory) as s:   # as an old request, before the forms validated the product
        row = s.get(ServiceRequest, rid)
        assert row is not None
        row.product = "four boxes to the usual place"
    rep, _ = world.staff("rep")
    listed = next(r for r in rep.get("/api/staff/requests", headers=JSON).json()["requests"] if r["id"] == rid)
    assert listed["product"] is None
    detail = rep.get(f"/api/staff/requests/{rid}", headers=JSON).json()
    assert detail["product"] is None and detail["details"] == {"sample_quantity": "2 packs"}
    with world.factory() as s:   # the stored row is left as it is
        assert s.get(ServiceRequest, rid).product == "four boxes to the usual place"   # type: ignore[union-attr]
    _, _, ok = world.chat_with_request()
    assert next(r for r in rep.get("/api/staff/requests", headers=JSON).json()["requests"]
                if r["id"] == ok)["product"] == "respizan"
