"""Auto-assignment in Chromium: a rep goes online from the Inbox header, a handoff is offered to her
with Accept / Decline, declining sends it to the shared queue, a claim beyond her capacity is
refused on the page with nothing lost, and accepting opens the conversation.
Screenshot: docs/screens/console-inbox-offered.png."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.conversations import service as conversations
from api.db import unit_of_work
from api.handoffs.assign import AssignPolicy
from api.handoffs.models import Handoff
from api.handoffs.service import open_handoff
from api.settings import Settings
from api.staff.models import StaffUser
from tests.browser.staff_pages import DOCS_SCREENS, log_in, make_staff

Page = Any
MARKET = "ZD"
POLICY = AssignPolicy(enabled=True, offer_timeout=timedelta(minutes=10), max_open=1)


@pytest.fixture()
def settings(settings: Settings) -> Settings:
    # The sweeper stays off: the suite's database is shared, and offers here are made on opening.
    return settings.model_copy(update={"auto_assign": True, "assign_max_open": 1, "assign_sweep_interval_s": 0})


def _handoff(engine: Engine, hcp_words: str) -> str:
    now = datetime.now(UTC)
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        conv, _token = conversations.create_webchat(s, now=now, market=MARKET)
        conversations.persist_inbound(s, conv, text=hcp_words, now=now)
        return open_handoff(s, conv, target="rep", reason="hcp_request", now=now, policy=POLICY).id


def _wait_until_online(engine: Engine, user_id: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as s:
            user = s.get(StaffUser, user_id)
            if user is not None and user.presence == "online":
                return
        time.sleep(0.05)
    raise AssertionError(f"the presence chosen on the page was not saved within {timeout:g} s")


def test_a_rep_goes_online_declines_an_offer_is_stopped_at_capacity_and_accepts(
        staff_page: Page, live_server: str, engine: Engine) -> None:
    base, rep = live_server, staff_page
    email = make_staff(engine, "rep", "Ada Lovelace")
    with unit_of_work(sessionmaker(bind=engine)) as s:
        user = s.execute(select(StaffUser).where(StaffUser.email == email)).scalar_one()
        user.markets, user_id = [MARKET], user.id
        # Nobody else is online: colleagues other tests left online in the shared database would
        # otherwise take the offers this journey expects (round-robin).
        s.execute(update(StaffUser).where(StaffUser.id != user_id).values(presence="offline"))
    try:
        log_in(rep, base, email, "/console/inbox")
        expect(rep.get_by_test_id("presence")).to_have_value("offline")
        expect(rep.locator("#assign-mode")).to_contain_text("Auto-assignment is on")
        rep.get_by_test_id("presence").select_option("online")
        expect(rep.get_by_test_id("load")).to_have_text("0 of 1 open")
        # The page saves the choice with a background request: the offers below are made in this process
        # at once, so wait until the database says she is online (seen in CI: the first handoff opened
        # before the request landed and was never offered).
        _wait_until_online(engine, user_id)

        first = _handoff(engine, "Could someone from the access team call me about formulary listing?")
        row = rep.locator(f'#offered [data-handoff-id="{first}"]')
        expect(row).to_be_visible(timeout=12_000)  # the queue refreshes every 5 s
        expect(row.get_by_test_id("accept")).to_be_visible()
        expect(rep.get_by_test_id("load")).to_have_text("1 of 1 open")

        # Declined: nobody else is online, so it waits in the shared queue.
        row.get_by_test_id("decline").click()
        declined_row = rep.locator(f'#queued [data-handoff-id="{first}"]')
        expect(declined_row).to_be_visible()
        expect(rep.locator("#offered-card")).to_be_hidden()
        expect(rep.get_by_test_id("load")).to_have_text("0 of 1 open")

        second = _handoff(engine, "I would like to book a meeting about the new dosing card.")
        offered_row = rep.locator(f'#offered [data-handoff-id="{second}"]')
        expect(offered_row).to_be_visible(timeout=12_000)

        # At capacity (one offer pending): claiming the waiting one is refused on the page, nothing lost.
        declined_row.get_by_test_id("claim").click()
        expect(rep.locator("#assign-error")).to_contain_text("your limit is 1")
        expect(rep).to_have_url(f"{base}/console/inbox")
        expect(declined_row).to_be_visible()
        rep.screenshot(path=str(DOCS_SCREENS / "console-inbox-offered.png"))
        with Session(engine) as s:
            still = s.get(Handoff, first)
            assert still is not None and still.status == "queued" and still.claimed_by is None

        offered_row.get_by_test_id("accept").click()
        expect(rep).to_have_url(f"{base}/console/inbox/{second}")
        expect(rep.locator("#status-text")).to_contain_text("claimed")
        with Session(engine) as s:
            taken = s.get(Handoff, second)
            assert taken is not None and taken.claimed_by == user_id and taken.offered_to is None
    finally:
        with unit_of_work(sessionmaker(bind=engine)) as s:
            user = s.get(StaffUser, user_id)
            assert user is not None
            user.presence = "offline"
