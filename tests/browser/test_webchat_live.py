"""The web chat page driving the real application (``api.app.create_app``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.content import make_send_gate
from api.conversations import service as conversations
from api.outbox import WebchatSender, deliver_pending
from tests.fakes.rasa import FakeRasa

Page = Any


def _open(page: Page, url: str) -> None:
    page.goto(url + "/")
    expect(page.locator("html[data-webchat-ready=true]")).to_have_count(1)


def _send(page: Page, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-input").press("Enter")


@pytest.mark.rasa
def test_real_app_greets_back_through_rasa(page: Page, live_rasa_stack_url: str, screens_dir: Path) -> None:
    _open(page, live_rasa_stack_url)
    _send(page, "hello")
    # The first turn of a freshly started Rasa can be slow on a busy machine.
    first = page.get_by_test_id("message-bot").first
    expect(first).to_be_visible(timeout=30000)
    texts = page.get_by_test_id("message-bot").get_by_test_id("message-text").all_text_contents()
    assert any(t.startswith("Hello! I'm the HCP Concierge") for t in texts), texts
    expect(page.get_by_test_id("chat-error")).to_be_hidden()
    page.screenshot(path=str(screens_dir / "webchat.png"))


def test_real_app_shows_the_bot_reply_and_its_quick_reply(page: Page, live_server: str) -> None:
    _open(page, live_server)
    _send(page, "hello")
    reply = page.get_by_test_id("message-bot")
    expect(reply.get_by_test_id("message-text")).to_have_text("echo: hello")
    expect(reply.get_by_test_id("quick-reply")).to_have_text(["Talk to a person"])
    expect(page.get_by_test_id("chat-error")).to_be_hidden()


def test_real_app_quick_reply_sends_the_payload_to_rasa(page: Page, live_server: str, fake_rasa: FakeRasa) -> None:
    _open(page, live_server)
    _send(page, "hello")
    page.get_by_test_id("quick-reply").click()
    expect(page.get_by_test_id("message-bot").last).to_contain_text("A colleague will join.")
    expect(page.get_by_test_id("quick-reply")).to_be_disabled()
    assert fake_rasa.calls[-1]["message"] == "/request_human"


def test_real_app_html_in_a_message_is_shown_as_text(page: Page, live_server: str) -> None:
    _open(page, live_server)
    markup = "<img src=x onerror=alert(1)>"
    _send(page, markup)
    expect(page.get_by_test_id("message-bot").get_by_test_id("message-text")).to_have_text(f"echo: {markup}")
    expect(page.get_by_test_id("message-user").get_by_test_id("message-text")).to_have_text(markup)
    assert page.locator("#messages img").count() == 0


def test_real_app_conversation_survives_a_reload_without_duplicates(page: Page, live_server: str) -> None:
    _open(page, live_server)
    _send(page, "hello")
    expect(page.get_by_test_id("message-bot")).to_have_count(1)
    page.wait_for_timeout(2000)  # a poll round returns the stored inbound and outbound messages
    expect(page.get_by_test_id("message-user")).to_have_count(1)
    expect(page.get_by_test_id("message-bot")).to_have_count(1)
    page.reload()
    expect(page.get_by_test_id("message-user").get_by_test_id("message-text")).to_have_text("hello")
    expect(page.get_by_test_id("message-bot").get_by_test_id("message-text")).to_have_text("echo: hello")


def test_real_app_rejection_is_shown_inline_and_keeps_the_text(page: Page, live_server: str) -> None:
    _open(page, live_server)
    # A NUL character passes the page's own guards; the server refuses it with a JSON error.
    page.get_by_test_id("chat-input").evaluate("el => { el.value = 'dose?\\u0000'; }")
    page.get_by_test_id("chat-input").press("Enter")
    expect(page.get_by_test_id("chat-error")).to_contain_text("NUL")
    assert page.get_by_test_id("chat-input").input_value() == "dose?\x00"
    expect(page.get_by_test_id("message-user")).to_have_count(0)


def test_real_app_staff_message_appears_by_polling_with_its_label(page: Page, live_server: str, engine: Engine) -> None:
    _open(page, live_server)
    _send(page, "I want to talk to a person")
    expect(page.get_by_test_id("message-bot")).to_contain_text("A colleague will join.")
    token = page.evaluate("localStorage.getItem('hcpConcierge.webchat.sessionId')")
    # A representative answers later, outside any page request: queued, then delivered.
    with Session(engine) as session:
        conv = conversations.get_by_session_token(session, token)
        now = datetime.now(UTC)
        conversations.add_outbound(session, conv, text="Hi, Sam here.\nHow can I help?", now=now, sender_type="staff",
                                   sender_label="Sam Rivera · your representative")
        deliver_pending(session, conv.id, senders={"webchat": WebchatSender()}, gate=make_send_gate("US"), now=now)
        session.commit()
    staff = page.get_by_test_id("message-staff")
    expect(staff).to_have_count(1, timeout=5000)
    expect(staff.locator(".msg-sender")).to_have_text("Sam Rivera · your representative")
    assert staff.get_by_test_id("message-text").text_content() == "Hi, Sam here.\nHow can I help?"


def test_real_app_staff_reply_arrives_on_the_live_stream_not_by_polling(
        page: Page, live_server: str, engine: Engine) -> None:
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    _open(page, live_server)
    _send(page, "I want to talk to a person")
    expect(page.get_by_test_id("message-bot")).to_contain_text("A colleague will join.")
    token = page.evaluate("localStorage.getItem('hcpConcierge.webchat.sessionId')")
    page.wait_for_timeout(2500)  # the stream is open; polling has slowed to its 15 s safety net
    assert any("/events?after=" in url for url in requests)
    polls_before = sum("/messages?after=" in url for url in requests)
    with Session(engine) as session:
        conv = conversations.get_by_session_token(session, token)
        now = datetime.now(UTC)
        conversations.add_outbound(session, conv, text="Sam here, live.", now=now, sender_type="staff")
        deliver_pending(session, conv.id, senders={"webchat": WebchatSender()}, gate=make_send_gate("US"), now=now)
        session.commit()
    staff = page.get_by_test_id("message-staff")
    expect(staff).to_have_count(1, timeout=4000)
    assert staff.get_by_test_id("message-text").text_content() == "Sam here, live."
    assert sum("/messages?after=" in url for url in requests) == polls_before
