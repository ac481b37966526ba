"""The WhatsApp sandbox page in Chromium: a person chats as a WhatsApp number through the fake
Twilio with the real application (``create_app``; Rasa is the fake of ``tests/fakes/rasa.py``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from api.app import create_app
from api.channels.whatsapp.models import WhatsappThread
from api.channels.whatsapp.sandbox import PhoneSandbox
from api.conversations.models import Message, OutboxItem
from api.db import make_session_factory
from api.pipeline.turn import null_safety_hook
from api.settings import Settings
from tests.browser.a11y import blocking_violations, overflow_px
from tests.browser.conftest import serve_app
from tests.fakes.rasa import FakeRasa

Page = Any
PUBLIC_URL = "https://concierge.example.com"
XSS = '<img src=x onerror="document.title=\'pwned\'"><b>bold?</b>'


@pytest.fixture()
def sandbox(engine: Engine, settings: Settings, fake_rasa: FakeRasa) -> Iterator[PhoneSandbox]:
    """The sandbox and the real app wired to each other, as ``concierge run --whatsapp-sandbox`` does."""
    with make_session_factory(engine).begin() as s:  # other tests' undelivered rows are not ours to send
        s.execute(update(OutboxItem).where(OutboxItem.channel == "whatsapp", OutboxItem.status == "pending")
                  .values(status="cancelled"))
    box = PhoneSandbox(webhook_base="http://127.0.0.1:9", public_url=PUBLIC_URL)
    box.start()
    app = create_app(box.configure(settings.model_copy(update={"public_url": PUBLIC_URL})), engine=engine,
                     safety_hook=null_safety_hook, rasa_transport=fake_rasa.transport(), warm_knowledge=False)
    try:
        with serve_app(app) as api_url:
            box.webhook_base = api_url  # known once the api listens; the signature is for PUBLIC_URL
            yield box
    finally:
        box.stop()


def _open(page: Page, sandbox: PhoneSandbox) -> str:
    page.goto(sandbox.url + "/")
    expect(page.locator("html[data-sandbox-ready=true]")).to_have_count(1)
    number = f"whatsapp:+1555{random.randrange(10**7):07d}"
    page.get_by_test_id("phone-number").fill(number)
    page.get_by_test_id("phone-number").press("Enter")
    expect(page.get_by_test_id("webhook-url")).to_contain_text("/webhooks/twilio/whatsapp")
    return number


def _type(page: Page, text: str) -> None:
    page.get_by_test_id("phone-input").fill(text)
    page.get_by_test_id("phone-input").press("Enter")


def test_chat_with_the_bot_over_the_fake_twilio_and_pick_a_numbered_option(
        page: Page, sandbox: PhoneSandbox, fake_rasa: FakeRasa, engine: Engine, screens_dir: Path) -> None:
    number = _open(page, sandbox)
    _type(page, "Hello, what is the dose of Cardiovex?")
    mine = page.get_by_test_id("bubble-phone")
    expect(mine.get_by_test_id("bubble-text")).to_have_text("Hello, what is the dose of Cardiovex?")
    expect(mine.get_by_test_id("bubble-status")).to_contain_text("webhook 200")
    business = page.get_by_test_id("bubble-business")
    reply = business.first
    expect(reply.get_by_test_id("bubble-text")).to_have_text(
        "echo: Hello, what is the dose of Cardiovex?", timeout=15000)
    expect(reply.get_by_test_id("option")).to_have_count(0)  # one menu per turn: on the last bubble
    # a first-time number: after the answer the api starts verification, a person still one tap away
    expect(business.nth(1).get_by_test_id("bubble-text")).to_contain_text("What is your full name?")
    expect(business.nth(1).get_by_test_id("option")).to_have_text(["1 · Talk to a person"])
    expect(page.get_by_test_id("phone-input")).to_have_value("")
    page.screenshot(path=str(screens_dir / "whatsapp-sandbox.png"))

    business.nth(1).get_by_test_id("option").click()  # sends "1", as an HCP would type it
    expect(mine.last.get_by_test_id("bubble-text")).to_have_text("1")
    # (the fake Rasa only answers; the real handoff action would also take the chat off the bot, and
    # the verification reminder that follows here would not be sent: tests/channels/test_whatsapp_intake.py)
    expect(business.filter(has_text="A colleague will join.")).to_have_count(1, timeout=15000)
    assert fake_rasa.calls[-1]["message"] == "/request_human"
    with Session(engine) as s:
        thread = s.get(WhatsappThread, number)
        assert thread is not None
        inbound = s.execute(select(Message.body, Message.payload).where(
            Message.conversation_id == thread.conversation_id, Message.direction == "in")
            .order_by(Message.id)).all()
    assert [tuple(r) for r in inbound] == [("Hello, what is the dose of Cardiovex?", None), ("1", "/request_human")]


def test_message_text_is_shown_as_text_never_as_html(page: Page, sandbox: PhoneSandbox) -> None:
    _open(page, sandbox)
    _type(page, XSS)
    expect(page.get_by_test_id("bubble-phone").get_by_test_id("bubble-text")).to_have_text(XSS)
    expect(page.get_by_test_id("bubble-business").first.get_by_test_id("bubble-text")).to_contain_text(
        "echo: " + XSS, timeout=15000)
    assert page.locator("[data-testid=phone-messages] img, [data-testid=phone-messages] b").count() == 0
    assert page.title() != "pwned"


def test_forged_signature_is_refused_by_the_api_and_shown_on_the_phone(
        page: Page, sandbox: PhoneSandbox, engine: Engine, fake_rasa: FakeRasa) -> None:
    number = _open(page, sandbox)
    page.get_by_test_id("forge").check()
    _type(page, "a forged hello")
    status = page.get_by_test_id("bubble-phone").get_by_test_id("bubble-status")
    expect(status).to_contain_text("refused 403")
    expect(page.get_by_test_id("forge")).not_to_be_checked()  # one forged message, not all that follow
    page.wait_for_timeout(1000)
    expect(page.get_by_test_id("bubble-business")).to_have_count(0)
    with Session(engine) as s:
        assert s.get(WhatsappThread, number) is None
    assert all(c["message"] != "a forged hello" for c in fake_rasa.calls)


def test_a_photo_gets_the_channels_attachment_answer(page: Page, sandbox: PhoneSandbox) -> None:
    _open(page, sandbox)
    page.get_by_test_id("send-photo").click()
    expect(page.get_by_test_id("bubble-phone").get_by_test_id("bubble-text")).to_have_text("[Photo]")
    expect(page.get_by_test_id("bubble-business")).to_contain_text("I have received your image", timeout=15000)


def test_the_phone_passes_axe_at_desktop_and_phone_width(page: Page, sandbox: PhoneSandbox) -> None:
    _open(page, sandbox)
    _type(page, "Do you have the Glucorel pen needles leaflet?")
    expect(page.get_by_test_id("bubble-business").first).to_be_visible(timeout=15000)
    problems = blocking_violations(page)
    page.set_viewport_size({"width": 390, "height": 844})
    problems += [f"390 px: {v}" for v in blocking_violations(page)]
    if over := overflow_px(page):
        problems.append(f"390 px: {over} px of horizontal scrolling")
    assert not problems, "\n".join(problems)
