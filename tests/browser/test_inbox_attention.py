"""A rep's attention in Chromium at desktop and phone size: the nav badge and the title count move
when a handoff arrives (on the inbox and on another console page), a screen reader hears about it,
the queue redraws without losing the keyboard's place, search and filters narrow the rows, the
opted-out flag shows, Ctrl+Enter sends a reply, and nothing scrolls sideways at 390 px."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.db import unit_of_work
from api.safety.screen import ScreenResult
from api.safety.service import apply
from tests.browser.a11y import overflow_px
from tests.browser.staff_pages import DOCS_SCREENS, log_in, make_staff
from tests.consoles.handoff_factory import factory, mark_screened, new_chat, queue_handoff

Page = Any
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
# The badge polls every 5 s and a change redraws the queue: leave room for two rounds.
WAIT_MS = 14000


def _hcp_says(engine: Engine, conversation_id: str, text: str, result: ScreenResult | None = None) -> None:
    now = datetime.now(UTC)
    with unit_of_work(factory(engine)) as s:
        conv = s.get(Conversation, conversation_id)
        assert conv is not None
        msg = conversations.persist_inbound(s, conv, text=text, now=now).message
        if result is not None:
            apply(s, conversation=conv, message=msg, result=result, now=now)
        mark_screened(s, msg)


def _reference(engine: Engine, handoff_id: str) -> str:
    from api.handoffs.models import Handoff
    with Session(engine) as s:
        h = s.get(Handoff, handoff_id)
        assert h is not None
        return h.reference


def _badge_count(page: Page) -> int:
    badge = page.get_by_test_id("nav-badge")
    expect(badge).to_have_attribute("data-count", re.compile(r"^\d+$"), timeout=WAIT_MS)
    return int(badge.get_attribute("data-count") or "0")


def _row(page: Page, handoff_id: str) -> Any:
    return page.locator(f'[data-testid=handoff-row][data-handoff-id="{handoff_id}"]')


@pytest.mark.parametrize("size", sorted(SIZES))
def test_a_new_handoff_gets_the_reps_attention_without_losing_their_place(
        browser: Any, live_server: str, engine: Engine, size: str) -> None:
    base = live_server
    width, height = SIZES[size]
    marker = uuid.uuid4().hex[:6]
    first_chat = new_chat(engine, now=datetime.now(UTC))
    first = queue_handoff(engine, first_chat, target="rep", now=datetime.now(UTC),
                          said=[f"Pharmacy {marker} asking about delivery slots"])

    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(WAIT_MS)
    rep = context.new_page()
    errors: list[str] = []
    rep.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(rep, base, make_staff(engine, "rep", "Robin Quayle"), "/console/inbox")
        row = _row(rep, first)
        expect(row).to_be_visible()
        expect(row.get_by_test_id("preview")).to_contain_text(f"Pharmacy {marker}")
        expect(row.get_by_test_id("waiting")).to_contain_text(re.compile(r"minute|min"))
        before = _badge_count(rep)
        expect(rep).to_have_title(re.compile(rf"^\({before}\) Inbox"))
        if size == "phone":
            assert overflow_px(rep) == 0

        # the keyboard is on the first row's Claim button; the row is remembered to prove it is the same one
        claim = row.get_by_test_id("claim")
        claim.focus()
        rep.evaluate("""id => { window.__kept = document.activeElement;
                                window.__row = document.querySelector(`tr[data-handoff-id="${id}"]`); }""", first)

        # a handoff arrives and the first HCP writes again
        second = queue_handoff(engine, new_chat(engine, now=datetime.now(UTC)), target="rep", now=datetime.now(UTC),
                               said=[f"Ward {marker} needs a call back"])
        second_ref = _reference(engine, second)
        _hcp_says(engine, first_chat.conversation_id, f"also, {marker} prefers mornings")

        expect(_row(rep, second)).to_be_visible(timeout=WAIT_MS)
        expect(rep.get_by_test_id("nav-badge")).to_have_attribute("data-count", str(before + 1))
        expect(rep).to_have_title(re.compile(rf"^\({before + 1}\) Inbox"))
        expect(rep.get_by_test_id("announcer")).to_contain_text(second_ref)
        expect(row.get_by_test_id("preview")).to_contain_text(f"{marker} prefers mornings")
        kept = rep.evaluate("""id => document.activeElement === window.__kept && window.__kept.isConnected
            && document.querySelector(`tr[data-handoff-id="${id}"]`) === window.__row""", first)
        assert kept, "the refresh replaced the focused Claim button or its row"
        assert rep.evaluate("document.activeElement.dataset.testid") == "claim"

        # search narrows to the new handoff; a status with no match hides both; clearing shows both
        rep.get_by_test_id("queue-search").fill(second_ref.lower())
        expect(_row(rep, first)).to_be_hidden()
        expect(_row(rep, second)).to_be_visible()
        expect(rep.get_by_test_id("queue-shown")).to_contain_text("Showing 1 of")
        rep.get_by_test_id("queue-search").fill(marker)
        expect(_row(rep, first)).to_be_visible()
        rep.get_by_test_id("queue-status").select_option("claimed")
        expect(_row(rep, first)).to_be_hidden()
        expect(_row(rep, second)).to_be_hidden()
        rep.get_by_test_id("queue-status").select_option("")
        expect(_row(rep, second)).to_be_visible()
        rep.get_by_test_id("queue-search").fill("")
        if size == "phone":
            assert overflow_px(rep) == 0
        rep.screenshot(path=str(DOCS_SCREENS / f"inbox-attention-{size}.png"), full_page=size == "desktop")

        # the HCP of the second handoff sends STOP: the rep sees the flag, and the filter finds it
        _hcp_says(engine, conversation_of_handoff(engine, second), "STOP", ScreenResult(opt_out=True))
        expect(_row(rep, second).get_by_test_id("opted-out")).to_be_visible(timeout=WAIT_MS)
        rep.get_by_test_id("queue-status").select_option("opted-out")
        expect(_row(rep, first)).to_be_hidden()
        expect(_row(rep, second)).to_be_visible()
        rep.get_by_test_id("queue-status").select_option("")

        # on another console page the badge and the title still follow the queue
        rep.goto(f"{base}/console/requests")
        shown = _badge_count(rep)
        third = queue_handoff(engine, new_chat(engine, now=datetime.now(UTC)), target="rep", now=datetime.now(UTC),
                              said=["is anyone there"])
        expect(rep.get_by_test_id("nav-badge")).to_have_attribute("data-count", str(shown + 1), timeout=WAIT_MS)
        expect(rep).to_have_title(re.compile(rf"^\({shown + 1}\) Service requests"))
        expect(rep.get_by_test_id("announcer")).to_contain_text(_reference(engine, third))
        if size == "phone":
            assert overflow_px(rep) == 0

        # Ctrl+Enter sends from the reply box; Enter alone makes a new line
        rep.goto(f"{base}/console/inbox/{first}")
        rep.get_by_test_id("claim").click()
        expect(rep.locator("#status-text")).to_contain_text("claimed")
        box = rep.get_by_test_id("reply-text")
        box.fill(f"Good morning, {marker} here")
        box.press("Enter")
        box.press_sequentially("mornings work for me too")
        expect(rep.get_by_test_id("message-staff")).to_have_count(0)
        box.press("Control+Enter")
        expect(rep.get_by_test_id("message-staff").last).to_contain_text("mornings work for me too")
        expect(box).to_have_value("")
        if size == "phone":
            assert overflow_px(rep) == 0
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def conversation_of_handoff(engine: Engine, handoff_id: str) -> str:
    from api.handoffs.models import Handoff
    with Session(engine) as s:
        h = s.get(Handoff, handoff_id)
        assert h is not None
        return h.conversation_id


def test_the_alert_choice_is_remembered_and_a_new_handoff_beeps(
        browser: Any, live_server: str, engine: Engine) -> None:
    base = live_server
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    rep = context.new_page()
    try:
        log_in(rep, base, make_staff(engine, "rep", "Kit Alder"), "/console/inbox")
        toggle = rep.get_by_test_id("queue-alerts")
        expect(toggle).not_to_be_checked()
        _badge_count(rep)
        queue_handoff(engine, new_chat(engine, now=datetime.now(UTC)), target="rep", now=datetime.now(UTC),
                      said=["a quiet one"])
        expect(rep.get_by_test_id("announcer")).to_contain_text("New handoff", timeout=WAIT_MS)
        assert rep.evaluate("document.body.dataset.alertsPlayed") is None  # off: no sound

        toggle.check()
        rep.reload()
        expect(rep.get_by_test_id("queue-alerts")).to_be_checked()
        assert rep.evaluate("localStorage.getItem('concierge.inbox.alerts')") == "on"
        _badge_count(rep)
        queue_handoff(engine, new_chat(engine, now=datetime.now(UTC)), target="rep", now=datetime.now(UTC),
                      said=["a loud one"])
        expect(rep.locator("body[data-alerts-played]")).to_have_count(1, timeout=WAIT_MS)
    finally:
        context.close()


def test_when_the_focused_row_is_taken_by_a_colleague_focus_lands_on_its_list(
        browser: Any, live_server: str, engine: Engine) -> None:
    from api.handoffs.service import claim
    from api.staff.service import StaffIdentity

    base = live_server
    taken = queue_handoff(engine, new_chat(engine, now=datetime.now(UTC)), target="rep", now=datetime.now(UTC),
                          said=["whoever is free"])
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.set_default_timeout(WAIT_MS)
    rep = context.new_page()
    try:
        log_in(rep, base, make_staff(engine, "rep", "Ash Moreno"), "/console/inbox")
        _row(rep, taken).get_by_test_id("claim").focus()
        colleague_email = make_staff(engine, "rep", "Noor Patel")
        from api.staff.models import StaffUser
        with unit_of_work(factory(engine)) as s:
            user = s.query(StaffUser).filter_by(email=colleague_email).one()
            colleague = StaffIdentity(id=user.id, email=user.email, name=user.name, roles=frozenset(user.roles),
                                      territory=None, session_id="test", csrf_token="test")
            claim(s, taken, colleague, datetime.now(UTC))
        expect(_row(rep, taken)).to_have_count(0, timeout=WAIT_MS)
        assert rep.evaluate("document.activeElement.tagName + ':' + document.activeElement.textContent") == "H2:Waiting"
        assert overflow_px(rep) == 0
    finally:
        context.close()
