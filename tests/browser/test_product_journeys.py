"""Issue-19 journeys in Chromium at a desktop and a phone size: a preference echoed the right way round
and undone (real Rasa), a CX tile drilled down to its conversations, an invited colleague choosing
their own password, and a safety case assigned to a colleague after a confirmation. Each page is
checked for horizontal scrolling at 390 px."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.db import unit_of_work
from api.safety.screen import ScreenResult
from tests.browser.a11y import overflow_px
from tests.browser.staff_pages import chat, hcp_says, log_in, make_staff, open_chat
from tests.cx.dataset import build

Page = Any
SIZES = [(1280, 800), (390, 844)]


@pytest.fixture(params=SIZES, ids=["desktop", "phone"])
def sized(request: pytest.FixtureRequest, browser: Any) -> Iterator[Page]:
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(20000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _no_sideways_scroll(page: Page) -> None:
    if page.viewport_size["width"] <= 400:
        assert overflow_px(page) == 0, page.url


@pytest.mark.rasa
def test_a_preference_is_echoed_the_right_way_round_and_undone(sized: Page, live_rasa_stack_url: str) -> None:
    page = sized
    open_chat(page, live_rasa_stack_url)
    before = page.get_by_test_id("message-bot").count()
    chat(page, "from now on email suits me better than whatsapp, please switch")
    bot = page.get_by_test_id("message-bot")
    expect(bot).not_to_have_count(before, timeout=30000)
    echo = bot.filter(has_text="instead of").last
    expect(echo).to_contain_text("email instead of WhatsApp", timeout=30000)
    _no_sideways_scroll(page)
    echo.get_by_test_id("quick-reply").filter(has_text="Undo").click()
    expect(bot.filter(has_text="Undone").last).to_be_visible(timeout=30000)


def test_a_cx_tile_drills_down_to_its_conversations(sized: Page, live_server: str, engine: Engine) -> None:
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        crafted = build(s)
    window = (f"days=custom&since={crafted.since.date().isoformat()}"
              f"&until={(crafted.until - timedelta(days=1)).date().isoformat()}")
    log_in(sized, live_server, make_staff(engine, "cx_analyst", "Cam Analyst"), "/console/cx")
    sized.goto(f"{live_server}/console/cx?{window}")
    tile = sized.locator('[data-kpi="containment"]')
    _no_sideways_scroll(sized)
    tile.get_by_test_id("kpi-drill").click()
    expect(sized.get_by_role("heading", level=1)).to_contain_text("Contained")
    expect(sized.locator("tr[data-conversation]")).to_have_count(1)   # one contained conversation (dataset)
    expect(sized.get_by_test_id("drill-summary")).to_contain_text("1 conversation")
    _no_sideways_scroll(sized)


def test_an_invited_colleague_sets_their_password_and_logs_in(sized: Page, browser: Any, live_server: str,
                                                               engine: Engine) -> None:
    admin = sized
    log_in(admin, live_server, make_staff(engine, "admin", "Ada Admin"), "/console/admin")
    address = f"invitee-{uuid.uuid4().hex[:8]}@halcyon.example"
    admin.get_by_label("Email").fill(address)
    admin.get_by_label("Name").fill("Ivo Invitee")
    admin.locator('input[name="roles"][value="msl"]').check()
    admin.get_by_role("button", name="Create user").click()
    link = admin.get_by_test_id("invite-link").inner_text().strip()
    assert re.search(r"/console/invite/[A-Za-z0-9_-]{20,}$", link), link
    _no_sideways_scroll(admin)

    invitee = browser.new_context(viewport=admin.viewport_size).new_page()
    try:
        invitee.goto(link)
        invitee.get_by_label("Password (at least").fill("a passphrase of my own 2026")
        invitee.get_by_label("Password again").fill("a passphrase of my own 2026")
        _no_sideways_scroll(invitee)
        invitee.get_by_role("button", name="Set my password").click()
        expect(invitee.locator(".flash")).to_contain_text("Your password is set")
        invitee.get_by_label("Email").fill(address)
        invitee.get_by_label("Password").fill("a passphrase of my own 2026")
        invitee.get_by_role("button", name="Log in").click()
        expect(invitee).to_have_url(f"{live_server}/console")
    finally:
        invitee.context.close()


def test_a_safety_case_is_assigned_to_a_colleague_after_a_confirmation(
        sized: Page, page: Page, live_server: str, engine: Engine) -> None:
    from datetime import UTC, datetime

    from api.conversations.models import Conversation, Message
    from api.safety.service import apply

    marker = uuid.uuid4().hex[:8]
    conv_id, msg_id = hcp_says(
        page, live_server, engine, f"a patient fainted twice after starting Glucorel last week ({marker})", marker)
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        conv, msg = s.get(Conversation, conv_id), s.get(Message, msg_id)
        assert conv is not None and msg is not None
        case_id = apply(s, conversation=conv, message=msg, now=datetime.now(UTC), result=ScreenResult(
            adverse_event=True, ae_categories=("side_effect",), ae_score=0.95, products=("glucorel",))).adverse_event_id
    make_staff(engine, "safety", f"Sol Colleague {marker}")
    log_in(sized, live_server, make_staff(engine, "safety", "Pat Vigilance"), "/console/safety")
    sized.goto(f"{live_server}/console/safety/{case_id}")
    sized.get_by_test_id("assign-to").select_option(label=f"Sol Colleague {marker}")
    asked: list[str] = []
    sized.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    sized.get_by_test_id("assign-submit").click()
    expect(sized.get_by_test_id("assign-submit")).to_be_visible()       # dismissed: nothing happened
    assert asked and "Assign" in asked[0]
    sized.once("dialog", lambda d: d.accept())
    sized.get_by_test_id("assign-submit").click()
    expect(sized.locator(".flash")).to_contain_text("assigned to your colleague")
    expect(sized.locator("body")).to_contain_text(f"Sol Colleague {marker}")
    _no_sideways_scroll(sized)
