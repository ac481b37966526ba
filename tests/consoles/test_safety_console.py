"""The Safety console: access, the regulatory clock, criteria, status transitions and the case export."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.safety.models import AdverseEvent
from api.safety.screen import ScreenResult
from api.settings import Settings
from api.staff import notes
from tests.consoles.conftest import StaffAccount, login
from tests.consoles.review_fixtures import OTHER_THAN, Chat, ReviewWorld, canary, review_world, unique

JSON = {"accept": "application/json"}


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> Iterator[ReviewWorld]:
    yield from review_world(engine, settings, make_staff)


def _report(world: ReviewWorld, text: str, *, serious: bool = False, categories: tuple[str, ...] = ("side_effect",),
            chat: Chat | None = None) -> tuple[Chat, AdverseEvent]:
    """An HCP reports a possible adverse event in web chat; the screen flags it."""
    chat = chat or world.chat()
    world.screen.script[text] = ScreenResult(
        adverse_event=True, ae_categories=categories, ae_score=0.93, products=("cardiovex",), serious=serious,
        serious_terms=("hospitalised",) if serious else ())
    replies = chat.say(text)
    assert any("reference" in r["text"] for r in replies)
    return chat, world.case_for(chat.conversation_id)


def _post(client: TestClient, url: str, csrf: str, body: Any) -> Any:
    return client.post(url, json=body, headers={**JSON, "x-csrf-token": csrf})


def _listed(client: TestClient, case_id: str, **params: str) -> dict[str, Any]:
    res = client.get("/api/staff/safety/cases", params=params, headers=JSON)
    assert res.status_code == 200, res.text
    [found] = [c for c in res.json()["cases"] if c["id"] == case_id]
    return dict(found)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _row(page: str, case_id: str) -> str:
    start = page.index(f'data-case="{case_id}"')
    return page[start:page.index("</tr>", start)]


def _state(case: AdverseEvent) -> tuple[Any, ...]:
    return (case.status, case.seriousness, case.due_at, case.has_reporter, case.has_patient, case.has_product,
            case.has_event, case.legal_hold, case.updated_at)


def _routes(case_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", "/console/safety"), ("GET", f"/console/safety/{case_id}"),
        ("POST", f"/console/safety/{case_id}/status"), ("POST", f"/console/safety/{case_id}/assessment"),
        ("GET", "/api/staff/safety/cases"), ("GET", f"/api/staff/safety/cases/{case_id}"),
        ("POST", f"/api/staff/safety/cases/{case_id}/status"),
        ("POST", f"/api/staff/safety/cases/{case_id}/assessment"),
        ("GET", f"/api/staff/safety/cases/{case_id}/export"),
    ]


# ---------------------------------------------------------------- access and firewall


def test_every_other_role_is_refused_on_every_safety_route_including_the_export(world: ReviewWorld) -> None:
    _chat, case = _report(world, f"my patient had a rash after cardiovex {unique()}")
    before = _state(case)
    for role in OTHER_THAN["safety"]:
        client, _acc, csrf = world.staff_client(role)
        for method, url in [*_routes(case.id), *_routes(uuid.uuid4().hex)]:
            body = {"status": "closed", "reason": "x", "seriousness": "serious"} if method == "POST" else None
            res = client.request(method, url, headers={**JSON, "x-csrf-token": csrf}, json=body)
            assert res.status_code == 403, (role, method, url, res.status_code)
            assert res.json()["error"]["code"] == "forbidden"
        res = client.post(f"/console/safety/{case.id}/status", data={"csrf_token": csrf, "status": "closed",
                                                                     "reason": "x"})
        assert res.status_code == 403
    anonymous = world.make_client()
    assert anonymous.get(f"/console/safety/{case.id}").status_code == 303
    assert anonymous.get(f"/api/staff/safety/cases/{case.id}/export", headers=JSON).status_code == 401
    assert _state(world.case(case.id)) == before


def test_ae_canary_never_reaches_another_role_but_safety_sees_it(world: ReviewWorld) -> None:
    secret = canary()
    _chat, case = _report(world, f"a 54 year old woman had a seizure on cardiovex {secret}", serious=True)
    pv, _acc, _csrf = world.staff_client("safety")
    assert secret in pv.get(f"/console/safety/{case.id}").text  # the control: it is there to leak
    assert secret in pv.get(f"/api/staff/safety/cases/{case.id}/export").text
    urls = [u for m, u in _routes(case.id) if m == "GET"] + [
        "/console/medical", "/api/staff/medical/inquiries", f"/console/medical/{case.id}",
        f"/api/staff/medical/inquiries/{case.id}"]
    for role in OTHER_THAN["safety"]:
        client, _acc, _csrf = world.staff_client(role)
        for url in urls:
            for accept in ("application/json", "text/html"):
                res = client.get(url, headers={"accept": accept})
                assert secret not in res.text, (role, url)
                own_list = role == "medical_reviewer" and url in ("/console/medical", "/api/staff/medical/inquiries")
                assert res.status_code in ((200,) if own_list else (403, 404)), (role, url, res.status_code)


# ---------------------------------------------------------------- the clock


def test_the_clock_counts_15_days_for_serious_or_unassessed_and_90_for_non_serious(world: ReviewWorld) -> None:
    t0 = world.clock.now()
    _c1, serious = _report(world, f"patient on cardiovex hospitalised with liver failure {unique()}",
                           serious=True)
    _c2, mild = _report(world, f"patient on cardiovex has a mild headache {unique()}")
    pv, account, csrf = world.staff_client("safety")

    listed = _listed(pv, serious.id)
    assert (_at(listed["day0_at"]), _at(listed["due_at"])) == (t0, t0 + timedelta(days=15))
    clock = listed["clock"]
    assert (_at(clock.pop("day0_at")), _at(clock.pop("due_at"))) == (t0, t0 + timedelta(days=15))
    assert clock == {"deadline_days": 15, "days_left": 15, "running": True, "overdue": False, "due_soon": False,
                     "label": "15 days left", "badge": "ok"}
    assert _listed(pv, mild.id)["clock"]["deadline_days"] == 15  # not yet assessed: the conservative clock
    res = _post(pv, f"/api/staff/safety/cases/{mild.id}/assessment", csrf, {"seriousness": "non_serious"})
    assert res.status_code == 200, res.text
    assert _at(res.json()["due_at"]) == t0 + timedelta(days=90)
    assert res.json()["clock"]["days_left"] == 90 and res.json()["status"] == "triaged"

    world.clock.advance(days=12, hours=2)
    csrf = login(pv, account)  # console sessions last 12 hours (a new login, a new CSRF token)
    clock = _listed(pv, serious.id)["clock"]
    assert (clock["days_left"], clock["due_soon"], clock["overdue"], clock["badge"], clock["label"]) == (
        3, True, False, "due-soon", "3 days left")
    assert '<span class="badge due-soon">3 days left</span>' in _row(pv.get("/console/safety").text, serious.id)

    world.clock.set(t0 + timedelta(days=15, hours=1))
    csrf = login(pv, account)
    clock = _listed(pv, serious.id)["clock"]
    assert (clock["days_left"], clock["overdue"], clock["label"]) == (0, True, "overdue (due today)")

    world.clock.set(t0 + timedelta(days=17))
    csrf = login(pv, account)
    clock = _listed(pv, serious.id)["clock"]
    assert (clock["days_left"], clock["overdue"], clock["badge"], clock["label"]) == (
        -2, True, "overdue", "overdue by 2 days")
    page = pv.get("/console/safety").text
    assert '<span class="badge overdue">overdue by 2 days</span>' in _row(page, serious.id)
    assert '<span class="badge ok">73 days left</span>' in _row(page, mild.id)

    # Submitted: the clock stops, whatever the date.
    assert _post(pv, f"/api/staff/safety/cases/{serious.id}/assessment", csrf,
                 {"criteria": {"reporter": True, "patient": True}}).status_code == 200
    assert _post(pv, f"/api/staff/safety/cases/{serious.id}/status", csrf,
                 {"status": "triaged"}).status_code == 200
    done = _post(pv, f"/api/staff/safety/cases/{serious.id}/status", csrf, {"status": "submitted"})
    assert done.status_code == 200, done.text
    assert (done.json()["clock"]["running"], done.json()["clock"]["label"]) == (False, "clock stopped")
    assert serious.id not in [c["id"] for c in pv.get("/api/staff/safety/cases", headers=JSON).json()["cases"]]
    assert _listed(pv, serious.id, status="submitted")["clock"]["badge"] == ""


# ---------------------------------------------------------------- the case page and criteria


def test_case_page_shows_source_messages_verbatim_criteria_legal_hold_and_is_audited(world: ReviewWorld) -> None:
    chat = world.chat()
    chat.say("hi, a question first")
    marker = unique()
    text = f"my patient had  a rash\nafter the 2nd dose of cardiovex <b>{marker}</b>"
    _chat, case = _report(world, text, chat=chat)
    pv, account, _csrf = world.staff_client("safety")
    page = pv.get(f"/console/safety/{case.id}")
    assert page.status_code == 200
    escaped = text.replace("<", "&lt;").replace(">", "&gt;")
    assert f'<pre class="body">{escaped}</pre>' in page.text  # verbatim, whitespace kept, never as HTML
    assert f"<b>{marker}</b>" not in page.text
    assert "legal hold" in page.text and "hi, a question first" in page.text
    assert "✘ Identifiable reporter" in page.text and "✔ Suspect product" in page.text
    assert '<option value="triaged">' in page.text and '<option value="closed">' in page.text
    assert '<option value="submitted">' not in page.text  # not reachable from new
    assert "adverse_event.created" in page.text  # the history
    detail = pv.get(f"/api/staff/safety/cases/{case.id}", headers=JSON).json()
    assert [s["body"] for s in detail["source_messages"]] == [text]
    assert detail["legal_hold"] is True and detail["missing"] == ["reporter", "patient"]
    with world.factory() as s:
        views = list(s.execute(select(AuditEvent).where(AuditEvent.subject_id == case.id,
                                                        AuditEvent.action == "adverse_event.viewed")).scalars())
    assert [(v.actor_type, v.actor_id) for v in views] == [("staff", account.id)] * 2


def test_a_follow_up_answer_is_a_second_source_message_and_criteria_can_be_ticked_after_follow_up(
        world: ReviewWorld) -> None:
    chat, case = _report(world, f"my patient had a rash after cardiovex {unique()}")
    assert case.missing_criteria == ["reporter", "patient"] and case.missing_asked
    world.clock.advance(minutes=4)
    chat.say("she is 62")  # answers the question the bot asked once; linked to the case
    pv, account, csrf = world.staff_client("safety")
    detail = pv.get(f"/api/staff/safety/cases/{case.id}", headers=JSON).json()
    assert [s["body"] for s in detail["source_messages"]][1] == "she is 62"
    assert detail["missing"] == ["reporter"]

    # The reporter called back with their details: the reviewer ticks the criterion on the page.
    res = pv.post(f"/console/safety/{case.id}/assessment",
                  data={"csrf_token": csrf, "has_reporter": "on", "has_patient": "on", "has_product": "on",
                        "has_event": "on"})
    assert res.status_code == 303 and res.headers["location"].endswith("?done=assessment")
    assert "Assessment saved." in pv.get(res.headers["location"]).text
    after = world.case(case.id)
    assert after.is_complete and after.updated_at == world.clock.now()
    with world.factory() as s:
        [event] = s.execute(select(AuditEvent).where(AuditEvent.subject_id == case.id,
                                                     AuditEvent.action == "adverse_event.criteria")).scalars()
    assert event.actor_id == account.id and event.data == {"set": {"reporter": True}, "missing": []}
    same = pv.post(f"/console/safety/{case.id}/assessment",
                   data={"csrf_token": csrf, "has_reporter": "on", "has_patient": "on", "has_product": "on",
                         "has_event": "on"})
    assert same.headers["location"].endswith("?done=unchanged")


def test_quality_complaints_have_their_own_reference_filter_and_three_criteria(world: ReviewWorld) -> None:
    _chat, pqc = _report(world, f"the cardiovex blister was empty {unique()}",
                         categories=("quality_complaint",))
    _chat2, ae = _report(world, f"my patient had a rash after cardiovex {unique()}")
    assert pqc.kind == "quality_complaint" and pqc.reference.startswith("PQC-")
    pv, _acc, _csrf = world.staff_client("safety")
    quality = [c["id"] for c in pv.get("/api/staff/safety/cases", params={"kind": "quality_complaint"},
                                       headers=JSON).json()["cases"]]
    assert pqc.id in quality and ae.id not in quality
    listed = _listed(pv, pqc.id)
    assert [c["name"] for c in listed["criteria"] if c["required"]] == ["reporter", "product", "event"]
    row = _row(pv.get("/console/safety", params={"kind": "quality_complaint"}).text, pqc.id)
    assert "patient" not in row and "✔ product" in row
    assert pv.get("/api/staff/safety/cases", params={"kind": "recall"}, headers=JSON).status_code == 422


# ---------------------------------------------------------------- status transitions


def test_status_moves_only_along_the_allowed_transitions_with_reasons_and_audit(world: ReviewWorld) -> None:
    _chat, case = _report(world, f"a 54 year old woman had a seizure on cardiovex {unique()}")
    pv, account, csrf = world.staff_client("safety")
    url = f"/api/staff/safety/cases/{case.id}/status"

    def move(body: dict[str, Any]) -> Any:
        return _post(pv, url, csrf, body)

    skip = move({"status": "submitted"})
    assert skip.status_code == 409 and "a new case cannot become submitted" in skip.json()["error"]["message"]
    assert move({"status": "triaged", "expected": "new"}).json()["status"] == "triaged"
    stale = move({"status": "closed", "expected": "new", "reason": "dup"})
    assert stale.status_code == 409 and "changed meanwhile: it is now triaged" in stale.json()["error"]["message"]
    invalid = move({"status": "submitted"})
    assert invalid.status_code == 409 and "missing reporter" in invalid.json()["error"]["message"]
    _post(pv, f"/api/staff/safety/cases/{case.id}/assessment", csrf, {"criteria": {"reporter": True}})
    unassessed = move({"status": "submitted"})
    assert unassessed.status_code == 409 and "assess the seriousness" in unassessed.json()["error"]["message"]
    _post(pv, f"/api/staff/safety/cases/{case.id}/assessment", csrf, {"seriousness": "serious"})
    assert move({"status": "submitted"}).json()["status"] == "submitted"
    for back in ("new", "triaged", "submitted"):
        assert move({"status": back}).status_code == 409
    no_reason = move({"status": "closed"})
    assert no_reason.status_code == 422 and "say why the case is closed" in no_reason.json()["error"]["message"]
    assert move({"status": "closed", "reason": "Submitted to the MHRA, ack received"}).json()["status"] == "closed"
    assert move({"status": "triaged"}).status_code == 422  # reopening needs a reason
    reopened = move({"status": "triaged", "reason": "Follow-up from the reporter"})
    assert reopened.json()["status"] == "triaged" and reopened.json()["allowed_transitions"] == ["submitted", "closed"]
    assert move({"status": "deleted"}).status_code == 422
    assert pv.delete(f"/api/staff/safety/cases/{case.id}", headers={**JSON, "x-csrf-token": csrf}).status_code == 405

    with world.factory() as s:
        events = list(s.execute(
            select(AuditEvent).where(AuditEvent.subject_id == case.id, AuditEvent.action == "adverse_event.status")
            .order_by(AuditEvent.seq)).scalars())
        assert not any("MHRA" in json.dumps(e.data) for e in events)  # staff text is referenced, not copied
        trail = [(e.actor_id, d.get("from"), d.get("status"), d.get("reason"))
                 for e, d in zip(events, notes.resolve(s, [e.data for e in events]), strict=True)]
    assert trail == [
        (account.id, "new", "triaged", None), (account.id, "triaged", "submitted", None),
        (account.id, "submitted", "closed", "Submitted to the MHRA, ack received"),
        (account.id, "closed", "triaged", "Follow-up from the reporter")]
    assert world.case(case.id).legal_hold is True


def test_the_status_form_redirects_on_success_and_shows_a_refusal_on_the_page(world: ReviewWorld) -> None:
    _chat, case = _report(world, f"my patient had a rash after cardiovex {unique()}")
    pv, _acc, csrf = world.staff_client("safety")
    res = pv.post(f"/console/safety/{case.id}/status", data={"csrf_token": csrf, "status": "closed", "expected": "new"})
    assert res.status_code == 422 and "say why the case is closed" in res.text and 'class="flash error"' in res.text
    res = pv.post(f"/console/safety/{case.id}/status",
                  data={"csrf_token": csrf, "status": "closed", "expected": "new", "reason": "Not an AE: a query"})
    assert res.status_code == 303
    page = pv.get(res.headers["location"]).text
    assert "Status updated." in page and "Not an AE: a query" in page
    assert world.case(case.id).status == "closed"
    with world.factory() as s:
        refused = list(s.execute(select(AuditEvent).where(
            AuditEvent.subject_id == case.id, AuditEvent.action == "adverse_event.status_refused")).scalars())
    assert [r.data["code"] for r in refused] == ["invalid_input"]


@pytest.mark.parametrize(("path", "body", "fragment"), [
    ("assessment", {}, "nothing to update"),
    ("assessment", {"seriousness": "unknown"}, "seriousness must be one of"),
    ("assessment", {"seriousness": "fatal"}, "seriousness must be one of"),
    ("assessment", {"criteria": {"patient": "yes"}}, "criteria.patient"),
    ("assessment", {"criteria": {"mood": True}}, "unknown criteria: mood"),
    ("assessment", {"legal_hold": False}, "legal_hold"),
    ("assessment", {"seriousness": "serious", "criteria": {"patient": True, "x": True}}, "unknown criteria: x"),
    ("status", {}, "status"),
    ("status", {"status": "closed", "reason": "x" * 1001}, "longer than 1000"),
    ("status", {"status": "triaged", "expected": "pending"}, "unknown status 'pending'"),
    ("status", {"status": 3}, "status"),
    ("status", ["closed"], "must be a JSON object"),
])
def test_bad_input_is_a_clear_4xx_and_changes_nothing(world: ReviewWorld, path: str, body: Any,
                                                      fragment: str) -> None:
    _chat, case = _report(world, f"my patient had a rash after cardiovex {unique()}")
    before = _state(world.case(case.id))
    pv, _acc, csrf = world.staff_client("safety")
    res = _post(pv, f"/api/staff/safety/cases/{case.id}/{path}", csrf, body)
    assert res.status_code == 422, res.text
    assert fragment in res.json()["error"]["message"]
    assert _state(world.case(case.id)) == before


def test_unknown_case_ids_are_404_for_safety_whatever_the_body(world: ReviewWorld) -> None:
    pv, _acc, csrf = world.staff_client("safety")
    bodies: dict[str, list[Any]] = {"status": [{"status": "triaged"}, {"status": "closed"}, {"status": "nonsense"}],
              "assessment": [{"seriousness": "serious"}, {"criteria": {}}, {"seriousness": "bogus"}]}
    for ghost in (uuid.uuid4().hex, "x" * 300):
        for method, url in _routes(ghost):
            if url in ("/console/safety", "/api/staff/safety/cases"):
                continue
            for body in bodies[url.rsplit("/", 1)[1]] if method == "POST" else [None]:
                res = pv.request(method, url, headers={**JSON, "x-csrf-token": csrf}, json=body)
                assert res.status_code == 404, (method, url, body, res.status_code)


# ---------------------------------------------------------------- export


def test_export_is_an_attachment_with_case_clock_criteria_sources_and_audit_trail(world: ReviewWorld) -> None:
    t0 = world.clock.now()
    chat, case = _report(world, f"my patient was hospitalised after cardiovex {unique()}", serious=True)
    world.clock.advance(minutes=3)
    chat.say("he is 71")
    pv, account, csrf = world.staff_client("safety")
    _post(pv, f"/api/staff/safety/cases/{case.id}/status", csrf, {"status": "triaged"})
    world.clock.advance(days=2)
    csrf = login(pv, account)

    res = pv.get(f"/api/staff/safety/cases/{case.id}/export")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/json")
    assert res.headers["content-disposition"] == f'attachment; filename="{case.reference}.json"'
    doc = json.loads(res.text)
    assert doc["format"] == "hcp-concierge/adverse-event-case@1" and doc["exported_by"] == account.id
    assert doc["exported_at"] == world.clock.now().isoformat()
    assert doc["case"]["id"] == case.id and doc["case"]["reference"] == case.reference
    assert (doc["case"]["kind"], doc["case"]["status"], doc["case"]["seriousness"]) == (
        "adverse_event", "triaged", "serious")
    assert doc["case"]["legal_hold"] is True
    assert doc["day0_at"] == t0.isoformat() and doc["due_at"] == (t0 + timedelta(days=15)).isoformat()
    assert doc["clock"] == {"deadline_days": 15, "days_left": 13, "running": True, "overdue": False,
                            "due_soon": False}
    assert doc["criteria"] == {"reporter": False, "patient": True, "product": True, "event": True,
                               "required": ["reporter", "patient", "product", "event"], "missing": ["reporter"],
                               "complete": False}
    sources = doc["source_messages"]
    assert [s["body"] for s in sources] == [case.raw_text.split("\n---\n")[0], "he is 71"]
    assert [s["received_at"] for s in sources] == [t0.isoformat(), (t0 + timedelta(minutes=3)).isoformat()]
    assert all(s["direction"] == "in" and s["channel"] == "webchat" for s in sources)
    actions = [e["action"] for e in doc["audit_trail"]]
    assert actions[:2] == ["adverse_event.created", "adverse_event.missing_asked"]
    assert "adverse_event.follow_up" in actions and "adverse_event.status" in actions
    assert actions[-1] == "adverse_event.exported"
    assert doc["audit_trail"][-1]["actor_id"] == account.id
    seqs = [e["seq"] for e in doc["audit_trail"]]
    assert seqs == sorted(seqs)
    assert re.fullmatch(r"[0-9a-f]{32}", doc["case"]["conversation_id"])
