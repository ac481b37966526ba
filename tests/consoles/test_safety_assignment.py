"""Safety cases have one assignee at a time: take, take over knowingly, release; atomic and audited."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.safety.models import AdverseEvent
from api.safety.screen import ScreenResult
from api.settings import Settings
from api.staff.models import StaffUser
from tests.consoles.conftest import StaffAccount
from tests.consoles.review_fixtures import ReviewWorld, review_world, unique

JSON = {"accept": "application/json"}


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> Iterator[ReviewWorld]:
    yield from review_world(engine, settings, make_staff)


def _name(world: ReviewWorld, account: StaffAccount) -> str:
    with world.factory() as s:
        user = s.get(StaffUser, account.id)
        assert user is not None and user.name
        return user.name


def _case(world: ReviewWorld) -> AdverseEvent:
    text = f"my patient fainted after the second dose {unique()}"
    world.screen.script[text] = ScreenResult(adverse_event=True, ae_categories=("side_effect",), ae_score=0.9,
                                             products=("cardiovex",))
    chat = world.chat()
    chat.say(text)
    return world.case_for(chat.conversation_id)


def _assign(client: TestClient, csrf: str, case_id: str, body: Any) -> Any:
    return client.post(f"/api/staff/safety/cases/{case_id}/assignment", json=body,
                       headers={**JSON, "x-csrf-token": csrf})


def _listed(client: TestClient, assignee: str) -> set[str]:
    res = client.get("/api/staff/safety/cases", params={"status": "all", "assignee": assignee, "offset": 0},
                     headers=JSON)
    assert res.status_code == 200, res.text
    ids = {c["id"] for c in res.json()["cases"]}
    offset = res.json()["next_offset"]
    while offset is not None:
        more = client.get("/api/staff/safety/cases",
                          params={"status": "all", "assignee": assignee, "offset": offset}, headers=JSON).json()
        ids |= {c["id"] for c in more["cases"]}
        offset = more["next_offset"]
    return ids


def test_take_take_over_and_release_with_the_holder_named_and_every_move_audited(world: ReviewWorld) -> None:
    case = _case(world)
    ana, ana_acc, ana_csrf = world.staff_client("safety")
    ben, ben_acc, ben_csrf = world.staff_client("safety")

    assert case.id in _listed(ana, "none") and case.id not in _listed(ana, "mine")
    taken = _assign(ana, ana_csrf, case.id, {"take": True, "expected": None})
    assert taken.status_code == 200 and taken.json()["assignee_id"] == ana_acc.id
    assert case.id in _listed(ana, "mine") and case.id not in _listed(ana, "none")
    assert case.id not in _listed(ben, "mine")
    assert _assign(ana, ana_csrf, case.id, {"take": True}).json()["assignee_id"] == ana_acc.id   # idempotent

    # Ben saw the case unassigned: he is told who has it, and nothing changes
    clash = _assign(ben, ben_csrf, case.id, {"take": True, "expected": ""})
    assert clash.status_code == 409
    assert _name(world, ana_acc) in clash.json()["error"]["message"]
    assert world.case(case.id).assignee_id == ana_acc.id
    # only the holder can put it back
    refused = _assign(ben, ben_csrf, case.id, {"take": False})
    assert refused.status_code == 409 and world.case(case.id).assignee_id == ana_acc.id
    # having seen Ana holds it, Ben takes it over
    over = _assign(ben, ben_csrf, case.id, {"take": True, "expected": ana_acc.id})
    assert over.status_code == 200 and over.json()["assignee_id"] == ben_acc.id
    # Ana's stale page (she still thinks she has it) cannot release it
    assert _assign(ana, ana_csrf, case.id, {"take": False}).status_code == 409
    released = _assign(ben, ben_csrf, case.id, {"take": False})
    assert released.status_code == 200 and released.json()["assignee_id"] is None
    assert world.case(case.id).assigned_at is None

    with world.factory() as s:
        events = list(s.execute(select(AuditEvent).where(
            AuditEvent.subject_id == case.id,
            AuditEvent.action.in_(["adverse_event.assigned", "adverse_event.released",
                                   "adverse_event.assignment_refused"]))
            .order_by(AuditEvent.seq)).scalars())
    moves = [(e.action, e.actor_id, e.data.get("from"), e.data.get("assignee_id")) for e in events
             if e.action != "adverse_event.assignment_refused"]
    assert moves == [("adverse_event.assigned", ana_acc.id, None, ana_acc.id),
                     ("adverse_event.assigned", ben_acc.id, ana_acc.id, ben_acc.id),
                     ("adverse_event.released", ben_acc.id, ben_acc.id, None)]
    assert sum(e.action == "adverse_event.assignment_refused" for e in events) == 3


def test_staff_taking_the_same_case_at_once_leave_exactly_one_assignee(world: ReviewWorld) -> None:
    case = _case(world)
    staff = [world.staff_client("safety") for _ in range(5)]
    barrier = threading.Barrier(len(staff))
    results: list[tuple[str, int]] = []
    lock = threading.Lock()

    def take(client: TestClient, account: StaffAccount, csrf: str) -> None:
        barrier.wait()
        res = _assign(client, csrf, case.id, {"take": True, "expected": None})
        with lock:
            results.append((account.id, res.status_code))

    threads = [threading.Thread(target=take, args=s) for s in staff]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [who for who, code in results if code == 200]
    assert len(results) == 5 and len(winners) == 1
    assert sorted(code for _who, code in results) == [200, 409, 409, 409, 409]
    assert world.case(case.id).assignee_id == winners[0]


def test_the_case_page_form_takes_and_releases_and_the_list_shows_the_assignee(world: ReviewWorld) -> None:
    case = _case(world)
    pv, account, csrf = world.staff_client("safety")
    page = pv.get(f"/console/safety/{case.id}").text
    assert "Take this case" in page
    res = pv.post(f"/console/safety/{case.id}/assignment", data={"csrf_token": csrf, "take": "1", "expected": ""})
    assert res.status_code == 303
    page = pv.get(res.headers["location"]).text
    assert "The case is yours." in page and "Put back in the queue" in page
    listing = pv.get("/console/safety?status=all&assignee=mine").text
    assert f'data-case="{case.id}"' in listing and '<td class="assignee">you</td>' in listing
    other, _acc, other_csrf = world.staff_client("safety")
    assert _name(world, account) in other.get(f"/console/safety/{case.id}").text
    stale = other.post(f"/console/safety/{case.id}/assignment",
                       data={"csrf_token": other_csrf, "take": "1", "expected": ""})
    assert stale.status_code == 409 and _name(world, account) in stale.text and 'class="flash error"' in stale.text
    bad = pv.post(f"/console/safety/{case.id}/assignment", data={"csrf_token": csrf, "take": "maybe"})
    assert bad.status_code == 422
    res = pv.post(f"/console/safety/{case.id}/assignment", data={"csrf_token": csrf, "take": "0",
                                                                   "expected": account.id})
    assert res.status_code == 303 and world.case(case.id).assignee_id is None
    export = pv.get(f"/api/staff/safety/cases/{case.id}/export").json()
    assert export["case"]["assignee_id"] is None


@pytest.mark.parametrize("body", [{}, {"take": "yes"}, {"take": True, "who": "me"}, ["take"]])
def test_bad_assignment_bodies_are_422_and_change_nothing(world: ReviewWorld, body: Any) -> None:
    case = _case(world)
    pv, _acc, csrf = world.staff_client("safety")
    assert _assign(pv, csrf, case.id, body).status_code == 422
    assert world.case(case.id).assignee_id is None


def test_an_unknown_assignee_filter_is_422(world: ReviewWorld) -> None:
    pv, _acc, _csrf = world.staff_client("safety")
    assert pv.get("/api/staff/safety/cases", params={"assignee": "bob"}, headers=JSON).status_code == 422


def test_a_case_is_assigned_to_a_colleague_knowingly_and_only_to_the_safety_team(world: ReviewWorld) -> None:
    case = _case(world)
    ana, ana_acc, ana_csrf = world.staff_client("safety")
    _ben, ben_acc, _ = world.staff_client("safety")
    _rep, rep_acc, _ = world.staff_client("rep")
    # from the queue to Ben, by Ana: audited as assigned by her
    given = _assign(ana, ana_csrf, case.id, {"take": True, "expected": "", "to": ben_acc.id})
    assert given.status_code == 200 and given.json()["assignee_id"] == ben_acc.id
    # a stale page (Ana thinks nobody has it) cannot move it again
    assert _assign(ana, ana_csrf, case.id, {"take": True, "expected": "", "to": ana_acc.id}).status_code == 409
    # not to someone outside the safety team, nor to nobody-in-particular ids
    for outsider in (rep_acc.id, "no-such-staff"):
        refused = _assign(ana, ana_csrf, case.id, {"take": True, "expected": ben_acc.id, "to": outsider})
        assert refused.status_code == 422 and "safety team" in refused.json()["error"]["message"]
    assert world.case(case.id).assignee_id == ben_acc.id
    with world.factory() as s:
        moved = s.execute(select(AuditEvent).where(AuditEvent.subject_id == case.id,
                                                   AuditEvent.action == "adverse_event.assigned")).scalars().all()
    assert [(e.actor_id, e.data["assignee_id"], e.data.get("assigned_by")) for e in moved] == [
        (ana_acc.id, ben_acc.id, ana_acc.id)]
    # the page offers colleagues (not the holder) with a confirmation
    page = ana.get(f"/console/safety/{case.id}").text
    assert 'data-testid="assign-to"' in page and "data-confirm=" in page
    assert f'<option value="{ben_acc.id}">' not in page
