"""Auto-assignment in the Inbox console over HTTP: presence, the "Offered to you" list, accept,
decline, a claim at capacity, and a colleague seeing whom a handoff is offered to. Bad input gets a
clear message and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.conversations.models import Conversation
from api.db import unit_of_work
from api.handoffs.assign import AssignPolicy
from api.handoffs.models import Handoff
from api.handoffs.service import open_handoff
from api.settings import Settings
from api.staff.models import StaffUser
from tests.consoles.conftest import StaffAccount
from tests.consoles.handoff_factory import factory, new_chat, post_json

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
