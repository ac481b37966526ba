"""Auto-assignment in the Inbox console over HTTP: presence, the "Offered to you" list, accept,
decline, a claim at capacity, and a colleague seeing whom a handoff is offered to. Bad input gets a
clear message and changes nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.clock import FakeClock
from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.db import unit_of_work
from api.handoffs import assign
from api.handoffs.assign import AssignPolicy
from api.handoffs.models import Handoff
from api.handoffs.service import open_handoff
from api.settings import Settings
from api.staff.models import StaffUser
from tests.consoles.conftest import StaffAccount
from tests.consoles.handoff_factory import (
    AppMaker,
    clocked_app,  # noqa: F401  (fixture)
    factory,
    new_chat,
    post_json,
)

LoggedIn = Callable[..., tuple[TestClient, StaffAccount, str]]
MARKET = "ZC"
POLICY = AssignPolicy(enabled=True, offer_timeout=timedelta(minutes=5), max_open=2)


@pytest.fixture()
def settings(settings: Settings) -> Settings:
    # Auto-assignment on for these apps; their sweeper stays off (the suite's database is shared).
    return settings.model_copy(update={"auto_assign": True, "assign_max_open": 2, "assign_sweep_interval_s": 0})


def _serve_market(engine: Engine, *accounts: StaffAccount, max_open: int | None = None) -> None:
    with unit_of_work(factory(engine)) as s:
        for account in accounts:
            user = s.get(StaffUser, account.id)
            assert user is not None
            user.markets, user.max_open = [MARKET], max_open


def _offer(engine: Engine) -> str:
    now = datetime.now(UTC)
    chat = new_chat(engine, now=now, market=MARKET)
    with unit_of_work(factory(engine)) as s:
        conv = s.get(Conversation, chat.conversation_id)
        assert conv is not None
        return open_handoff(s, conv, target="rep", reason="hcp_request", now=now, policy=POLICY).id


def _go(client: TestClient, csrf: str, presence: str) -> dict[str, object]:
    res = post_json(client, "/api/staff/presence", csrf, {"presence": presence})
    assert res.status_code == 200, res.text
    body: dict[str, object] = res.json()
    return body


def test_presence_offers_accept_decline_and_capacity_through_the_console(engine: Engine,
                                                                          logged_in: LoggedIn) -> None:
    ada_client, ada, ada_csrf = logged_in("rep")
    bo_client, bo, bo_csrf = logged_in("rep")
    _serve_market(engine, ada, max_open=1)
    _serve_market(engine, bo)
    try:
        page = ada_client.get("/console/inbox").text
        assert 'data-testid="presence"' in page and "Auto-assignment is on" in page
        assert ada_client.get("/api/staff/inbox").json()["assignment"]["presence"] == "offline"

        # Bad presence: refused with the choices, nothing changes.
        res = post_json(ada_client, "/api/staff/presence", ada_csrf, {"presence": "on holiday"})
        assert res.status_code == 422 and "online, away, offline" in res.json()["error"]["message"]
        assert _go(ada_client, ada_csrf, "online") == {"auto_assign": True, "presence": "online", "load": 0,
                                                       "capacity": 1}

        first = _offer(engine)
        queue = ada_client.get("/api/staff/inbox").json()
        assert [h["id"] for h in queue["offered"]] == [first]
        assert first not in [h["id"] for h in queue["queued"]]
        assert queue["offered"][0]["offered_to_me"] and queue["assignment"]["load"] == 1
        assert 'data-testid="accept"' in ada_client.get("/console/inbox").text

        # Ada is at capacity (one offer pending): the next one waits in the shared queue, and her
        # claim of it is refused with her numbers; it stays there for a colleague.
        second = _offer(engine)
        res = post_json(ada_client, f"/api/staff/inbox/{second}/claim", ada_csrf)
        assert res.status_code == 409 and res.json()["error"]["code"] == "at_capacity"
        assert "limit is 1" in res.json()["error"]["message"]
        with factory(engine)() as s:
            row = s.get(Handoff, second)
            assert row is not None and row.status == "queued" and row.claimed_by is None and row.offered_to is None

        # Bo (offline) sees the first one as offered to Ada, and may still claim the second by hand.
        bo_queue = bo_client.get("/api/staff/inbox").json()
        offered_row = next(h for h in bo_queue["queued"] if h["id"] == first)
        assert offered_row["offered_to_name"] and not offered_row["offered_to_me"]
        assert post_json(bo_client, f"/api/staff/inbox/{second}/claim", bo_csrf).status_code == 200

        # Ada declines: Bo is offline, so it waits in the shared queue; declining twice is refused.
        res = post_json(ada_client, f"/api/staff/inbox/{first}/decline", ada_csrf)
        assert res.status_code == 200 and res.json()["offered_to_me"] is False
        again = post_json(ada_client, f"/api/staff/inbox/{first}/decline", ada_csrf)
        assert again.status_code == 409 and again.json()["error"]["code"] == "not_offered"
        assert "nothing changed" in again.json()["error"]["message"]

        # A third handoff goes to Ada (Bo is offline); accepting is the claim.
        third = _offer(engine)
        assert [h["id"] for h in ada_client.get("/api/staff/inbox").json()["offered"]] == [third]
        res = post_json(ada_client, f"/api/staff/inbox/{third}/claim", ada_csrf)
        assert res.status_code == 200 and res.json()["claimed_by"] == ada.id
        with factory(engine)() as s:
            actions = [e.action for e in s.execute(select(AuditEvent).where(
                AuditEvent.subject_id.in_([first, third])).order_by(AuditEvent.seq)).scalars()]
            presence = s.execute(select(AuditEvent).where(AuditEvent.subject_id == ada.id,
                                                          AuditEvent.action == "staff.presence_changed")).scalars()
            assert [(e.data["before"], e.data["after"]) for e in presence] == [("offline", "online")]
        assert actions.count("handoff.offered") == 2 and "handoff.offer_declined" in actions
        assert actions[-1] == "handoff.claimed"
    finally:
        _go(ada_client, ada_csrf, "offline")
        _go(bo_client, bo_csrf, "offline")


def test_an_admin_sets_capacity_languages_and_markets_and_bad_values_change_nothing(
        engine: Engine, logged_in: LoggedIn, make_staff: Callable[..., StaffAccount]) -> None:
    admin, _account, csrf = logged_in("admin")
    target = make_staff("rep")
    url = f"/console/admin/users/{target.id}/assignment"
    assert 'id="assignment"' in admin.get(f"/console/admin/users/{target.id}").text
    res = admin.post(url, data={"csrf_token": csrf, "max_open": "3", "languages": "fr, EN", "markets": "gb,ie"})
    assert res.status_code == 303 and res.headers["location"].endswith("?done=assignment")
    for bad, words in (({"max_open": "lots"}, "whole number"), ({"max_open": "0"}, "between 1 and 100"),
                       ({"markets": "Britain"}, "two-letter"), ({"languages": "<script>"}, "codes such as")):
        form = {"csrf_token": csrf, "max_open": "4", "languages": "de", "markets": "DE", **bad}
        res = admin.post(url, data=form)
        assert res.status_code == 422 and words in res.text
        assert "<script>" not in res.text  # the bad value is not echoed as markup
    with factory(engine)() as s:
        user = s.get(StaffUser, target.id)
        assert user is not None and (user.max_open, user.languages, user.markets) == (3, ["en", "fr"], ["GB", "IE"])
    # Another role may not change it.
    rep, _r, rep_csrf = logged_in("rep")
    assert rep.post(url, data={"csrf_token": rep_csrf, "max_open": "9"}).status_code == 403


def test_the_apps_sweeper_moves_an_expired_offer_to_the_next_person(
        engine: Engine, clocked_app: AppMaker) -> None:  # noqa: F811
    clock = FakeClock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    policy = AssignPolicy(enabled=True, offer_timeout=timedelta(seconds=60), max_open=50)
    with unit_of_work(factory(engine)) as s:
        team = [StaffUser(email=f"sw-{uuid.uuid4().hex[:10]}@halcyon.example", name=f"Sweep {i}", password_hash="x",
                          roles=["rep"], active=True, available=True, presence="online", markets=["ZE"],
                          max_open=50, created_at=clock.now()) for i in range(2)]
        s.add_all(team)
        s.flush()
        first, second = sorted(u.id for u in team)
        conv, _token = conversations.create_webchat(s, now=clock.now(), market="ZE")
        handoff_id = open_handoff(s, conv, target="rep", reason="hcp_request", now=clock.now(), policy=policy).id
    try:
        with factory(engine)() as s:
            assert s.get(Handoff, handoff_id).offered_to == first  # type: ignore[union-attr]
        clocked_app(clock, auto_assign=True, assign_sweep_interval_s=0.1, assign_offer_timeout_s=60,
                    assign_max_open=50)
        time.sleep(0.5)
        with factory(engine)() as s:
            assert s.get(Handoff, handoff_id).offered_to == first  # type: ignore[union-attr]  # not yet due
        clock.advance(seconds=61)
        deadline = time.monotonic() + 10
        moved_to = first
        while time.monotonic() < deadline and moved_to == first:
            time.sleep(0.1)
            with factory(engine)() as s:
                moved_to = s.get(Handoff, handoff_id).offered_to  # type: ignore[union-attr]
        assert moved_to == second
        with factory(engine)() as s:
            trail = [(e.action, e.data.get("staff_id")) for e in s.execute(
                select(AuditEvent).where(AuditEvent.subject_id == handoff_id).order_by(AuditEvent.seq)).scalars()]
        assert trail[-2:] == [("handoff.offer_expired", first), ("handoff.offered", second)]
    finally:
        with unit_of_work(factory(engine)) as s:
            for user in s.execute(select(StaffUser).where(StaffUser.id.in_([first, second]))).scalars():
                assign.set_presence(s, user, "offline", assign.OFF, clock.now(), actor_id=user.id)


def test_logging_out_sets_you_offline_and_your_offer_moves_to_a_colleague(engine: Engine,
                                                                           logged_in: LoggedIn) -> None:
    one_client, one, one_csrf = logged_in("rep")
    two_client, two, two_csrf = logged_in("rep")
    _serve_market(engine, one, two)
    try:
        _go(one_client, one_csrf, "online")
        _go(two_client, two_csrf, "online")
        handoff_id = _offer(engine)
        with factory(engine)() as s:
            first = s.get(Handoff, handoff_id).offered_to  # type: ignore[union-attr]
        leaving, leaving_csrf, staying = (one_client, one_csrf, two.id) if first == one.id else (
            two_client, two_csrf, one.id)
        assert leaving.post("/console/logout", data={"csrf_token": leaving_csrf}).status_code == 303
        with factory(engine)() as s:
            assert s.get(Handoff, handoff_id).offered_to == staying  # type: ignore[union-attr]
            assert s.get(StaffUser, first).presence == "offline"  # type: ignore[union-attr]
            why = s.execute(select(AuditEvent).where(AuditEvent.subject_id == handoff_id,
                                                     AuditEvent.action == "handoff.offer_withdrawn")).scalar_one()
            assert why.data["reason"] == "went offline" and why.data["staff_id"] == first
    finally:
        for client, csrf in ((one_client, one_csrf), (two_client, two_csrf)):
            if client.get("/api/staff/inbox").status_code == 200:
                _go(client, csrf, "offline")
