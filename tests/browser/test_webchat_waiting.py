"""The HCP's side of waiting for a person, in Chromium against the real app (Rasa faked): a banner
with the reference and the expected time, the bot still answering, Cancel, and a chat that survives
a closed tab."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.handoffs.models import Handoff
from tests.browser.a11y import overflow_px
from tests.browser.staff_pages import DOCS_SCREENS, chat, hand_to_rep, hcp_says, open_chat

Page = Any


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_waiting_banner_the_bot_still_answers_and_cancel_returns_to_the_bot(
        page: Page, live_server: str, engine: Engine, width: int, height: int) -> None:
    base, marker = live_server, uuid.uuid4().hex[:8]
    page.set_viewport_size({"width": width, "height": height})
    conv_id, _ = hcp_says(page, base, engine, f"I'd like someone to ring me about a homecare delivery ({marker})",
                          marker)
    handoff = hand_to_rep(engine, conv_id)

    chat(page, f"While I wait: how should the pens be stored? {marker}-2")
    expect(page.get_by_test_id("message-bot").filter(has_text=f"{marker}-2")).to_be_visible()  # the bot answered
    banner = page.get_by_test_id("waiting-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(handoff.reference)
    expect(banner).to_contain_text("expected by")
    assert overflow_px(page) == 0
    if width > 400:
        page.screenshot(path=str(DOCS_SCREENS / "webchat-waiting.png"))

    page.get_by_test_id("waiting-cancel").click()
    expect(page.get_by_test_id("message-bot").filter(has_text="withdrawn")).to_be_visible()
    expect(banner).to_be_hidden()
    with Session(engine) as s:
        h = s.get(Handoff, handoff.id)
        assert h is not None and h.outcome == "cancelled_by_hcp"


def test_the_chat_survives_a_closed_tab_and_can_be_forgotten(browser: Any, live_server: str) -> None:
    base, marker = live_server, uuid.uuid4().hex[:8]
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        first = context.new_page()
        open_chat(first, base)
        chat(first, f"Is there a pharmacy helpline? {marker}")
        expect(first.get_by_test_id("message-bot").filter(has_text=marker)).to_be_visible()
        first.close()                                   # the tab is closed …
        second = context.new_page()                     # … and the HCP comes back in a new one
        open_chat(second, base)
        expect(second.get_by_test_id("message-bot").filter(has_text=marker)).to_be_visible()
        assert marker not in second.url                 # the secret never travels in a URL
        second.get_by_test_id("forget-chat").click()
        expect(second.get_by_test_id("message-bot")).to_have_count(0)
        assert second.evaluate("localStorage.getItem('hcpConcierge.webchat.sessionId')") is None
    finally:
        context.close()
