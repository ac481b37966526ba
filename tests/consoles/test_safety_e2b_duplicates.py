"""The Safety console's E2B(R3) export and possible-duplicate review, over HTTP."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.safety import e2b
from api.safety.models import AdverseEvent, AdverseEventDuplicate
from api.safety.screen import ScreenResult
from api.settings import Settings
from tests.consoles.conftest import StaffAccount
from tests.consoles.review_fixtures import OTHER_THAN, Chat, ReviewWorld, canary, review_world, unique

JSON = {"accept": "application/json"}


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> Iterator[ReviewWorld]:
    yield from review_world(engine, settings, make_staff)


def _report(world: ReviewWorld, text: str, *, chat: Chat | None = None,
            categories: tuple[str, ...] = ("side_effect",)) -> tuple[Chat, AdverseEvent]:
    chat = chat or world.chat()
    world.screen.script[text] = ScreenResult(adverse_event=True, ae_categories=categories, ae_score=0.9,
                                             products=("cardiovex",))
    chat.say(text)
    return chat, world.case_for(chat.conversation_id)


def _post(client: TestClient, url: str, csrf: str, body: Any) -> Any:
    return client.post(url, json=body, headers={**JSON, "x-csrf-token": csrf})


def _complete(client: TestClient, csrf: str, case: AdverseEvent) -> None:
    res = _post(client, f"/api/staff/safety/cases/{case.id}/assessment", csrf,
                {"criteria": {"reporter": True, "patient": True, "product": True, "event": True}})
    assert res.status_code == 200, res.text


def _actions(world: ReviewWorld, case_id: str) -> list[str]:
    with world.factory() as s:
        return list(s.execute(select(AuditEvent.action).where(AuditEvent.subject_id == case_id)
                              .order_by(AuditEvent.seq)).scalars())


# ---------------------------------------------------------------- E2B(R3)


def test_e2b_export_downloads_a_valid_icsr_and_is_audited(world: ReviewWorld) -> None:
    secret = canary()
    _chat, case = _report(world, f"patient developed a rash on cardiovex {secret}")
    pv, _account, csrf = world.staff_client("safety")
    _complete(pv, csrf, case)
    res = pv.get(f"/api/staff/safety/cases/{case.id}/export/e2b")
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("application/xml")
    assert res.headers["content-disposition"] == f'attachment; filename="{case.reference}-e2b-r3.xml"'
    assert res.headers["cache-control"] == "no-store"
    root = ET.fromstring(res.content)
    assert e2b.check(root) == []
    [narrative] = e2b.select_all(root, next(r.path for r in e2b.ELEMENT_RULES if r.element == "H.1"))
    assert secret in (narrative.text or "")
    exported = [a for a in _actions(world, case.id) if a == "adverse_event.exported"]
    assert exported == ["adverse_event.exported"]
    page = pv.get(f"/console/safety/{case.id}").text
    assert f'href="/api/staff/safety/cases/{case.id}/export/e2b"' in page


def test_e2b_export_of_an_incomplete_case_is_a_clear_409_and_the_refusal_is_audited(world: ReviewWorld) -> None:
    _chat, case = _report(world, f"patient developed a rash on cardiovex {unique()}")
    pv, _account, _csrf = world.staff_client("safety")
    res = pv.get(f"/api/staff/safety/cases/{case.id}/export/e2b", headers=JSON)
    assert res.status_code == 409
    error = res.json()["error"]
    assert error["code"] == "conflict"
    assert "not a valid ICSR yet: missing reporter, patient" in error["message"]
    assert "C.2.r primary source" in error["message"]
    assert "adverse_event.export_refused" in _actions(world, case.id)
    assert world.case(case.id).status == "new"


def test_e2b_export_of_an_unknown_case_is_404(world: ReviewWorld) -> None:
    pv, _account, _csrf = world.staff_client("safety")
    res = pv.get(f"/api/staff/safety/cases/{uuid.uuid4().hex}/export/e2b", headers=JSON)
    assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"


def test_e2b_export_is_for_the_safety_role_only(world: ReviewWorld) -> None:
    secret = canary()
    _chat, case = _report(world, f"patient developed a rash on cardiovex {secret}")
    for role in OTHER_THAN["safety"]:
        client, _acc, _csrf = world.staff_client(role)
        res = client.get(f"/api/staff/safety/cases/{case.id}/export/e2b", headers=JSON)
        assert res.status_code == 403 and secret not in res.text, role
    assert world.make_client().get(f"/api/staff/safety/cases/{case.id}/export/e2b", headers=JSON).status_code == 401


# ---------------------------------------------------------------- possible duplicates


def _duplicate_pair(world: ReviewWorld) -> tuple[AdverseEvent, AdverseEvent, str]:
    chat, first = _report(world, f"pt came out in hives after cardiovex {unique()}")
    world.clock.advance(days=3)  # past the 24 h follow-up window: a new case in the same conversation
    _chat, second = _report(world, f"the hives are back, cardiovex again {unique()}", chat=chat)
    assert second.id != first.id
    with world.factory() as s:
        link = s.execute(select(AdverseEventDuplicate).where(AdverseEventDuplicate.case_id == second.id)).scalar_one()
    return first, second, link.id


def test_the_case_page_lists_the_possible_duplicate_and_the_reviewer_confirms_it(world: ReviewWorld) -> None:
    first, second, link_id = _duplicate_pair(world)
    pv, account, csrf = world.staff_client("safety")
    page = pv.get(f"/console/safety/{second.id}").text
    block = page[page.index(f'data-duplicate="{link_id}"'):]
    assert f'href="/console/safety/{first.id}"' in block and first.reference in block
    assert "possible" in block and "Confirm duplicate" in block
    listed = pv.get("/api/staff/safety/cases", params={"status": "open"}, headers=JSON).json()["cases"]
    counts = {c["id"]: c["possible_duplicates"] for c in listed if c["id"] in (first.id, second.id)}
    assert counts == {first.id: 1, second.id: 1}
    queue = pv.get("/console/safety").text
    assert f'data-duplicate-case="{first.id}"' in queue and f'data-duplicate-case="{second.id}"' in queue

    res = pv.post(f"/console/safety/{second.id}/duplicates/{link_id}",
                  data={"csrf_token": csrf, "decision": "confirmed", "reason": "same reaction reported twice"})
    assert res.status_code == 303 and res.headers["location"] == f"/console/safety/{second.id}?done=duplicate"
    detail = pv.get(f"/api/staff/safety/cases/{first.id}", headers=JSON).json()
    [dup] = detail["duplicates"]
    assert (dup["id"], dup["status"], dup["decided_by"], dup["other_id"]) == (link_id, "confirmed", account.id,
                                                                               second.id)
    for case_id in (first.id, second.id):
        assert "adverse_event.duplicate_confirmed" in _actions(world, case_id)
    trail = [e for e in detail["audit_trail"] if e["action"] == "adverse_event.duplicate_confirmed"]
    assert trail[0]["data"]["reason"] == "same reaction reported twice"
    # Both cases stay as they were: a confirmed duplicate is linked, not deleted or closed.
    assert world.case(first.id).status == world.case(second.id).status == "new"
    assert f'data-duplicate-case="{second.id}"' not in pv.get("/console/safety").text  # decided: off the list


def test_rejecting_needs_a_reason_and_a_second_decision_is_a_conflict(world: ReviewWorld) -> None:
    _first, second, link_id = _duplicate_pair(world)
    pv, _account, csrf = world.staff_client("safety")
    url = f"/api/staff/safety/cases/{second.id}/duplicates/{link_id}"
    res = _post(pv, url, csrf, {"decision": "rejected"})
    assert res.status_code == 422 and "say why" in res.json()["error"]["message"]
    res = pv.post(f"/console/safety/{second.id}/duplicates/{link_id}",
                  data={"csrf_token": csrf, "decision": "rejected", "reason": ""})
    assert res.status_code == 422 and "say why these are different cases" in res.text
    res = _post(pv, url, csrf, {"decision": "rejected", "reason": "different patients"})
    assert res.status_code == 200
    assert [d["status"] for d in res.json()["duplicates"]] == ["rejected"]
    other, _acc, other_csrf = world.staff_client("safety")
    res = _post(other, url, other_csrf, {"decision": "confirmed"})
    assert res.status_code == 409 and "already rejected" in res.json()["error"]["message"]
    res = _post(pv, url, csrf, {"decision": "confirmed", "extra": "x"})
    assert res.status_code == 422
    res = _post(pv, f"/api/staff/safety/cases/{second.id}/duplicates/{uuid.uuid4().hex}", csrf,
                {"decision": "confirmed"})
    assert res.status_code == 404
    assert "adverse_event.duplicate_refused" in _actions(world, second.id)


def test_other_roles_cannot_decide_duplicates(world: ReviewWorld) -> None:
    _first, second, link_id = _duplicate_pair(world)
    for role in OTHER_THAN["safety"]:
        client, _acc, csrf = world.staff_client(role)
        res = _post(client, f"/api/staff/safety/cases/{second.id}/duplicates/{link_id}", csrf,
                    {"decision": "confirmed"})
        assert res.status_code == 403, role
    with world.factory() as s:
        link = s.get(AdverseEventDuplicate, link_id)
        assert link is not None and link.status == "possible"


def test_a_case_without_duplicates_says_so(world: ReviewWorld) -> None:
    _chat, case = _report(world, f"patient had palpitations on cardiovex {unique()}")
    pv, _account, _csrf = world.staff_client("safety")
    page = pv.get(f"/console/safety/{case.id}").text
    assert re.search(r"Possible duplicates</h2>\s*<p class=\"muted\">None found", page)
