"""A samples request in the web chat, real api + real Rasa: the summary with Confirm / Edit comes first,
and the request exists only after Confirm (desktop and phone widths)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.conversations import service as conversations
from api.requests.models import ServiceRequest

Page = Any

pytestmark = pytest.mark.rasa


def _requests(engine: Engine, page: Page) -> list[ServiceRequest]:
    """This page's conversation's requests (the session id the page keeps in localStorage)."""
    sid = page.evaluate("() => window.localStorage.getItem('hcpConcierge.webchat.sessionId')")
    assert sid
    with Session(engine) as s:
        conv = conversations.get_by_session_token(s, sid)
        return list(s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).scalars())


def _say(page: Page, text: str) -> None:
    before = page.get_by_test_id("message-bot").count()
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-input").press("Enter")
    expect(page.get_by_test_id("message-bot")).not_to_have_count(before, timeout=30000)


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_confirm_is_shown_before_any_request_exists(page: Page, live_rasa_stack_url: str, engine: Engine,
                                                     screens_dir: Path, width: int, height: int) -> None:
    page.set_viewport_size({"width": width, "height": height})
    page.goto(live_rasa_stack_url + "/")
    expect(page.locator("html[data-webchat-ready=true]")).to_have_count(1)
    bot = page.get_by_test_id("message-bot")

    _say(page, "I'd like 3 packs of glucorel samples please")
    expect(bot.last).to_contain_text("Where should we deliver", timeout=30000)
    _say(page, "Canal Side Practice, 22 Wharf Road, Oxford OX2 6AB")
    summary = bot.filter(has_text="Please check your sample request").last
    expect(summary).to_be_visible(timeout=30000)
    expect(summary).to_contain_text("Glucorel (ferlaglutide)")
    expect(summary).to_contain_text("3 packs")
    expect(summary.get_by_test_id("quick-reply")).to_have_text(["Confirm", "Edit"])
    assert _requests(engine, page) == []           # the summary is shown, nothing is created yet
    if width == 390:
        overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{overflow}px of horizontal overflow at 390 px"
    page.screenshot(path=str(screens_dir / f"webchat-form-confirm-{width}.png"))

    summary.get_by_test_id("quick-reply").filter(has_text="Confirm").click()
    expect(bot.last).to_contain_text("reference SR-", timeout=30000)
    rows = _requests(engine, page)
    assert len(rows) == 1 and rows[0].product == "glucorel" and rows[0].details["sample_quantity"] == 3
    assert rows[0].reference in bot.last.inner_text()
