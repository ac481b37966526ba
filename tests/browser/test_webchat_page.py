"""The web chat page's rendering and interaction rules, against the stand-in API.

The page must show approved text verbatim (never as HTML), label approved content
with its approval code, send quick-reply payloads, keep typed text when a send
fails, and pick up messages a human sends later by polling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.fake_api import (
    APPROVAL_CODE,
    APPROVED_TEXT,
    MULTILINE_TEXT,
    STAFF_TEXT,
    STATIC_DIR,
    XSS_TEXT,
    FakeChatApi,
)

Page = Any


def _open(page: Page, url: str) -> None:
    page.goto(url + "/")
    expect(page.locator("html[data-webchat-ready=true]")).to_have_count(1)


def _send(page: Page, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-input").press("Enter")


def _message_posts(fake: FakeChatApi) -> list[dict[str, Any]]:
    return list(fake.requests)


def test_page_has_labelled_input_live_log_and_hcp_header(page: Page, fake_server: str) -> None:
    _open(page, fake_server)
    expect(page.get_by_role("heading", name="HCP Concierge")).to_be_visible()
    expect(page.get_by_text("For healthcare professionals only")).to_be_visible()
    expect(page.get_by_label("Your message")).to_be_visible()
    log = page.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(page.locator("footer")).to_contain_text("Adverse events")
    expect(page.get_by_test_id("chat-input")).to_be_focused()


def test_every_button_has_an_accessible_name(page: Page, fake_server: str) -> None:
    _open(page, fake_server)
    _send(page, "dosing")
    expect(page.get_by_test_id("quick-reply")).to_have_count(2)
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button')]
            .filter(b => !(b.getAttribute('aria-label') || b.textContent).trim())
            .map(b => b.outerHTML)"""
    )
    assert unnamed == []
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_role("group", name="Suggested replies")).to_be_visible()


def test_enter_sends_the_message_and_shows_the_bot_reply(page: Page, fake_server: str, fake_api: FakeChatApi) -> None:
    _open(page, fake_server)
    _send(page, "hello")
    expect(page.get_by_test_id("message-user").get_by_test_id("message-text")).to_have_text("hello")
    expect(page.get_by_test_id("message-bot")).to_contain_text("Hello! I can share approved")
    expect(page.get_by_test_id("chat-input")).to_have_value("")
    expect(page.get_by_test_id("chat-input")).to_be_focused()
    assert _message_posts(fake_api)[0]["text"] == "hello"
    assert "payload" not in _message_posts(fake_api)[0]


def test_shift_enter_adds_a_new_line_instead_of_sending(page: Page, fake_server: str, fake_api: FakeChatApi) -> None:
    _open(page, fake_server)
    box = page.get_by_test_id("chat-input")
    box.type("first")
    box.press("Shift+Enter")
    box.type("second")
    expect(box).to_have_value("first\nsecond")
    assert fake_api.requests == []
    expect(page.get_by_test_id("message-user")).to_have_count(0)


def test_reply_containing_html_is_shown_as_literal_text(page: Page, fake_server: str) -> None:
    _open(page, fake_server)
    _send(page, "xss")
    reply = page.get_by_test_id("message-bot").get_by_test_id("message-text")
    expect(reply).to_have_count(1)
    assert reply.text_content() == XSS_TEXT
    assert page.locator("#messages img, #messages script, #messages b").count() == 0
    assert page.evaluate("window.__xss") is None


def test_line_breaks_in_a_reply_are_preserved(page: Page, fake_server: str) -> None:
    _open(page, fake_server)
    _send(page, "multiline")
    reply = page.get_by_test_id("message-bot").get_by_test_id("message-text")
    expect(reply).to_have_count(1)
    assert reply.text_content() == MULTILINE_TEXT
    assert reply.inner_text() == MULTILINE_TEXT  # what is rendered, not only the DOM text
    assert reply.evaluate("el => getComputedStyle(el).whiteSpace") == "pre-wrap"


def test_approved_content_shows_its_approval_code_badge(page: Page, fake_server: str) -> None:
    _open(page, fake_server)
    _send(page, "dosing")
    reply = page.get_by_test_id("message-bot")
    expect(reply.get_by_test_id("approval-code")).to_have_text(f"Approved content · {APPROVAL_CODE}")
    assert reply.get_by_test_id("message-text").text_content() == APPROVED_TEXT
    expect(reply).to_have_attribute("data-content-id", "czn-dosing")
    expect(reply).to_have_attribute("data-content-version", "3")


def test_reply_without_approval_code_has_no_badge(page: Page, fake_server: str) -> None:
    _open(page, fake_server)
    _send(page, "hello")
    expect(page.get_by_test_id("message-bot")).to_have_count(1)
    expect(page.get_by_test_id("approval-code")).to_have_count(0)


def test_quick_reply_sends_its_payload_and_disables_that_messages_chips(
    page: Page, fake_server: str, fake_api: FakeChatApi
) -> None:
    _open(page, fake_server)
    _send(page, "dosing")
    chips = page.get_by_test_id("quick-reply")
    expect(chips).to_have_text(["Helpful", "Not helpful"])
    chips.first.click()
    expect(page.get_by_test_id("message-bot").last).to_contain_text("Thank you for your feedback.")
    expect(chips.first).to_be_disabled()
    expect(chips.last).to_be_disabled()
    assert fake_api.requests[-1]["text"] == "Helpful"
    assert fake_api.requests[-1]["payload"] == '/rate_answer{"helpful": true}'
    expect(page.get_by_test_id("message-user").last).to_contain_text("Helpful")


def test_server_error_is_shown_inline_and_the_typed_text_is_kept(
    page: Page, fake_server: str, fake_api: FakeChatApi
) -> None:
    _open(page, fake_server)
    fake_api.fail_next = 1
    _send(page, "what is the dose for renal impairment?")
    error = page.get_by_test_id("chat-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("The assistant is unavailable right now.")
    expect(page.get_by_test_id("chat-input")).to_have_value("what is the dose for renal impairment?")
    expect(page.get_by_test_id("message-user")).to_have_count(0)
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()


def test_retry_after_an_error_sends_the_kept_text(page: Page, fake_server: str, fake_api: FakeChatApi) -> None:
    _open(page, fake_server)
    fake_api.fail_next = 1
    _send(page, "hello")
    expect(page.get_by_test_id("chat-error")).to_be_visible()
    page.get_by_test_id("retry-button").click()
    expect(page.get_by_test_id("message-bot")).to_contain_text("Hello! I can share approved")
    expect(page.get_by_test_id("chat-error")).to_be_hidden()
    expect(page.get_by_test_id("chat-input")).to_have_value("")
    expect(page.get_by_test_id("message-user")).to_have_count(1)
    assert [r["text"] for r in fake_api.requests] == ["hello", "hello"]
    # the retry is the same message for the server (idempotent client id)
    assert fake_api.requests[0]["client_message_id"] == fake_api.requests[1]["client_message_id"]


def test_empty_message_is_refused_without_calling_the_server(
    page: Page, fake_server: str, fake_api: FakeChatApi
) -> None:
    _open(page, fake_server)
    _send(page, "   ")
    expect(page.get_by_test_id("chat-error")).to_contain_text("Please type a message")
    assert fake_api.requests == []
    assert fake_api.sessions_created == 0


def test_message_over_4096_characters_is_refused_and_kept(page: Page, fake_server: str, fake_api: FakeChatApi) -> None:
    _open(page, fake_server)
    too_long = "a" * 4097
    _send(page, too_long)
    expect(page.get_by_test_id("chat-error")).to_contain_text("too long")
    expect(page.get_by_test_id("chat-error")).to_contain_text("4096")
    assert page.get_by_test_id("chat-input").input_value() == too_long
    assert fake_api.requests == []


def test_message_of_exactly_4096_characters_is_sent(page: Page, fake_server: str, fake_api: FakeChatApi) -> None:
    _open(page, fake_server)
    _send(page, "b" * 4096)
    expect(page.get_by_test_id("message-bot")).to_have_count(1)
    assert len(fake_api.requests[0]["text"]) == 4096


def test_typing_indicator_shows_while_waiting_for_the_reply(page: Page, fake_server: str) -> None:
    _open(page, fake_server)
    _send(page, "slow")
    expect(page.get_by_test_id("typing-indicator")).to_be_visible()
    expect(page.get_by_test_id("message-bot")).to_have_count(1)
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()


def test_staff_message_sent_later_appears_by_polling_with_its_own_label(page: Page, fake_server: str) -> None:
    _open(page, fake_server)
    _send(page, "rep")
    expect(page.get_by_test_id("message-bot")).to_contain_text("asked your representative")
    staff = page.get_by_test_id("message-staff")
    expect(staff).to_have_count(1, timeout=6000)
    expect(staff.locator(".msg-sender")).to_have_text("Our team")  # an unlabelled staff message
    assert staff.get_by_test_id("message-text").text_content() == STAFF_TEXT


def test_polling_does_not_duplicate_messages_already_shown(page: Page, fake_server: str) -> None:
    _open(page, fake_server)
    _send(page, "hello")
    expect(page.get_by_test_id("message-bot")).to_have_count(1)
    # Two poll rounds return the stored inbound and outbound messages again.
    page.wait_for_timeout(3500)
    expect(page.get_by_test_id("message-user")).to_have_count(1)
    expect(page.get_by_test_id("message-bot")).to_have_count(1)


def test_reload_keeps_the_conversation_in_the_same_session(page: Page, fake_server: str, fake_api: FakeChatApi) -> None:
    _open(page, fake_server)
    _send(page, "dosing")
    expect(page.get_by_test_id("approval-code")).to_have_count(1)
    page.reload()
    expect(page.get_by_test_id("message-user")).to_have_count(1)
    expect(page.get_by_test_id("message-bot")).to_have_count(1)
    expect(page.get_by_test_id("approval-code")).to_have_text(f"Approved content · {APPROVAL_CODE}")
    _send(page, "hello")
    expect(page.get_by_test_id("message-bot")).to_have_count(2)
    assert fake_api.sessions_created == 1


def test_the_session_secret_travels_in_a_header_never_in_a_url(
    page: Page, fake_server: str, fake_api: FakeChatApi
) -> None:
    _open(page, fake_server)
    _send(page, "hello")
    expect(page.get_by_test_id("message-bot")).to_have_count(1)
    page.wait_for_timeout(300)  # at least one poll
    secret = page.evaluate("localStorage.getItem('hcpConcierge.webchat.sessionId')")
    assert secret and fake_api.requests[-1]["session_id"] == secret   # sent, in the header
    assert fake_api.urls and not any(secret in url for url in fake_api.urls)


def test_unknown_session_is_replaced_by_a_new_one_and_the_message_still_sent(
    page: Page, fake_server: str, fake_api: FakeChatApi
) -> None:
    page.add_init_script("localStorage.setItem('hcpConcierge.webchat.sessionId', 'expired-session')")
    _open(page, fake_server)
    _send(page, "hello")
    expect(page.get_by_test_id("message-bot")).to_contain_text("Hello! I can share approved")
    expect(page.get_by_test_id("chat-error")).to_be_hidden()
    assert fake_api.sessions_created == 1
    new_id = page.evaluate("localStorage.getItem('hcpConcierge.webchat.sessionId')")
    assert new_id in fake_api.sessions
    assert fake_api.requests[-1]["session_id"] == new_id


def test_page_fits_a_phone_screen_without_horizontal_scrolling(
    browser: Any, fake_server: str, screens_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2)
    try:
        page = context.new_page()
        _open(page, fake_server)
        _send(page, "dosing")
        expect(page.get_by_test_id("quick-reply")).to_have_count(2)
        expect(page.get_by_test_id("send-button")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.screenshot(path=str(screens_dir / "webchat-mobile.png"))
    finally:
        context.close()


def test_demo_conversation_screenshot(page: Page, fake_server: str, screens_dir: Path) -> None:
    """A conversation with approved content, quick replies and a representative, for the README."""
    _open(page, fake_server)
    _send(page, "dosing")
    expect(page.get_by_test_id("approval-code")).to_have_count(1)
    _send(page, "rep")
    expect(page.get_by_test_id("message-staff")).to_have_count(1, timeout=6000)
    page.screenshot(path=str(screens_dir / "webchat-demo.png"))
    assert (screens_dir / "webchat-demo.png").stat().st_size > 10_000


def test_page_script_never_writes_html_strings() -> None:
    """Message bodies reach the DOM only through textContent: no HTML sink in the script."""
    script = (STATIC_DIR / "webchat.js").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith(("*", "/*", "//")))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in code, f"webchat.js uses {sink}"
