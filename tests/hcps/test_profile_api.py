"""GET /api/hcps/{id}/profile and /timeline: one view of an HCP, role-checked, firewall kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from api.audit.models import AuditEvent
from api.db import unit_of_work
from tests.consoles.conftest import StaffAccount
from tests.hcps.factory import Planted, plant_hcp

JSON = {"accept": "application/json"}
LoggedIn = Callable[..., tuple[TestClient, StaffAccount, str]]


@pytest.fixture()
def planted(engine: Engine) -> Planted:
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as session:
        return plant_hcp(session)


def _all_events(client: TestClient, hcp_id: str, limit: int) -> tuple[list[dict[str, Any]], list[str]]:
    events: list[dict[str, Any]] = []
    bodies: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        res = client.get(f"/api/hcps/{hcp_id}/timeline", params=params, headers=JSON)
        assert res.status_code == 200, res.text
        bodies.append(res.text)
        page = res.json()
        events += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            return events, bodies
    raise AssertionError("the timeline never ended")


def test_rep_sees_the_profile_with_medical_and_safety_content_withheld(planted: Planted, logged_in: LoggedIn) -> None:
    client, _account, _csrf = logged_in("rep", territory="north")
    res = client.get(f"/api/hcps/{planted.hcp_id}/profile", headers=JSON)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["hcp"]["name"] == planted.name and body["hcp"]["verification_status"] == "verified"
    assert body["preferences"]["frequency"]["value"] == "monthly"
    rules = body["contact_rules"]  # what the fatigue guard applies to business-initiated messages
    assert rules["frequency_cap"] == {"messages": 1, "window_days": 30, "source": "stated", "sent_in_window": 0}
    assert rules["timezone"] == "Europe/London" and rules["quiet_hours"] == "21:00-08:00"
    assert {(c["channel"], c["purpose"], c["status"]) for c in body["consent"]} >= {("whatsapp", "service", "opt_in")}
    assert [r["id"] for r in body["open_service_requests"]] == [planted.service_request_id]
    assert [h["id"] for h in body["handoffs"]] == [planted.handoff_id] and body["handoffs"][0]["open"]
    assert body["feedback"]["csat"] == {"answered": 1, "average": 4.0}
    assert body["feedback"]["answer_ratings"] == {"helpful": 0, "not_helpful": 1}
    assert body["feedback"]["comments"]["by_category"] == {"frequency": 1}
    [mi] = body["medical_inquiries"]
    assert mi["id"] == planted.medical_inquiry_id and "text" not in mi and "response" not in mi
    [ae] = body["adverse_events"]
    assert ae["id"] == planted.adverse_event_id and "raw_text" not in ae and ae["legal_hold"] is True
    assert planted.mi_text not in res.text and planted.ae_text not in res.text


def test_rep_timeline_never_carries_inquiry_or_adverse_event_text(planted: Planted, logged_in: LoggedIn) -> None:
    client, _account, _csrf = logged_in("rep")
    events, bodies = _all_events(client, planted.hcp_id, limit=4)
    kinds = {e["kind"] for e in events}
    assert kinds >= {"conversation", "question", "service_request", "handoff", "medical_inquiry", "adverse_event",
                     "answer_rating", "survey", "comment", "preference_change", "consent_change"}
    for text in bodies:
        assert planted.mi_text not in text and planted.ae_text not in text
    [mi] = [e for e in events if e["kind"] == "medical_inquiry"]
    assert mi["data"]["reference"].startswith("MI-") and "text" not in mi["data"]


def test_timeline_pages_cover_everything_once_newest_first(planted: Planted, logged_in: LoggedIn) -> None:
    client, _account, _csrf = logged_in("medical_reviewer")
    whole, _ = _all_events(client, planted.hcp_id, limit=200)
    paged, _ = _all_events(client, planted.hcp_id, limit=3)
    assert [(e["kind"], e["id"]) for e in paged] == [(e["kind"], e["id"]) for e in whole]
    assert len({(e["kind"], e["id"]) for e in whole}) == len(whole) == 13
    stamps = [e["at"] for e in whole]
    assert stamps == sorted(stamps, reverse=True)
    changes = [e for e in whole if e["kind"] == "preference_change" and e["data"]["name"] == "frequency"]
    assert changes[0]["data"]["actor_type"] == "hcp" and changes[0]["data"]["message_id"] is not None
    assert changes[0]["conversation_id"] == planted.webchat_conversation_id


def test_medical_reviewer_reads_the_inquiry_but_not_the_adverse_event(planted: Planted, logged_in: LoggedIn,
                                                                       engine: Engine) -> None:
    client, account, _csrf = logged_in("medical_reviewer")
    events, bodies = _all_events(client, planted.hcp_id, limit=200)
    [mi] = [e for e in events if e["kind"] == "medical_inquiry"]
    assert planted.mi_text in mi["data"]["text"]
    assert all(planted.ae_text not in b for b in bodies)
    with sessionmaker(bind=engine)() as session:
        viewed = session.execute(select(AuditEvent).where(AuditEvent.actor_id == account.id,
                                                          AuditEvent.action == "medical_inquiry.viewed")).scalars()
        assert [v.subject_id for v in viewed] == [planted.hcp_id]


def test_safety_reads_the_adverse_event_narrative(planted: Planted, logged_in: LoggedIn) -> None:
    client, _account, _csrf = logged_in("safety")
    body = client.get(f"/api/hcps/{planted.hcp_id}/profile", headers=JSON).json()
    [ae] = body["adverse_events"]
    assert planted.ae_text in ae["raw_text"] and ae["seriousness"] == "serious"
    assert "text" not in body["medical_inquiries"][0]


@pytest.mark.parametrize("role", ["cx_analyst", "admin", "content_admin"])
def test_roles_without_a_need_to_know_are_refused(planted: Planted, logged_in: LoggedIn, role: str) -> None:
    client, _account, _csrf = logged_in(role)
    for what in ("profile", "timeline"):
        res = client.get(f"/api/hcps/{planted.hcp_id}/{what}", headers=JSON)
        assert res.status_code == 403 and planted.name not in res.text


def test_unknown_hcp_is_a_clear_404(logged_in: LoggedIn) -> None:
    client, _account, _csrf = logged_in("msl")
    for what in ("profile", "timeline"):
        res = client.get(f"/api/hcps/no-such-hcp/{what}", headers=JSON)
        assert res.status_code == 404
        assert res.json()["error"]["code"] == "not_found" and "no-such-hcp" in res.json()["error"]["message"]


def test_rep_of_another_territory_is_refused(planted: Planted, logged_in: LoggedIn) -> None:
    client, _account, _csrf = logged_in("rep", territory="south")
    res = client.get(f"/api/hcps/{planted.hcp_id}/profile", headers=JSON)
    assert res.status_code == 403 and planted.name not in res.text


def test_a_malformed_cursor_is_refused_clearly(planted: Planted, logged_in: LoggedIn) -> None:
    client, _account, _csrf = logged_in("msl")
    res = client.get(f"/api/hcps/{planted.hcp_id}/timeline", params={"cursor": "not-a-cursor"}, headers=JSON)
    assert res.status_code == 422 and "cursor" in res.json()["error"]["message"]
