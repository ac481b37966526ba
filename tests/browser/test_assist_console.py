"""Agent assist in Debian Chromium: a rep holding a handoff sees the approved items that fit the HCP's
question (never one the gate withholds from this HCP), sends one verbatim with a click, and inserts a
canned snippet into the reply box without losing what they typed. Screenshot: docs/screens/console-assist.png.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.conversations.models import Conversation, Message
from api.db import unit_of_work
from api.handoffs.service import open_handoff
from api.hcps.models import Hcp, VerificationStatus
from knowledge import snippets
from knowledge.service import load_library
from tests.browser.staff_pages import DOCS_SCREENS, chat, conversation_of, log_in, make_staff, open_chat

Page = Any


def _library(engine: Engine, tmp_path: Path, tag: str) -> dict[str, dict[str, Any]]:
    base: dict[str, Any] = {"version": 1, "product": f"prod{tag}", "kind": "faq", "audience": ["hcp"],
                            "status": "approved", "approved_at": "2026-01-01", "expires_at": "2027-12-31"}
    items = {
        "gb": {**base, "id": f"PW-{tag}-GB", "title": f"Ostravel {tag} and long-haul flights", "markets": ["GB"],
               "approval_code": f"APP-PW-{tag}-GB", "questions": [f"Can patients fly with Ostravel {tag} pens?"],
               "body": f"Ostravel {tag} pens can go in hand luggage; keep them below 25 °C during the flight."},
        "us": {**base, "id": f"PW-{tag}-US", "title": f"Ostravel {tag} air travel (US)", "markets": ["US"],
               "approval_code": f"APP-PW-{tag}-US", "questions": [f"Can patients fly with Ostravel {tag} pens?"],
               "body": f"Ostravel {tag} pens are allowed in carry-on bags under TSA rules."},
    }
    path = tmp_path / f"lib-{tag}.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items.values()), encoding="utf-8")
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        load_library(s, path, actor="tester")
    return items


def _snippet(engine: Engine, tag: str) -> tuple[str, str]:
    now = datetime.now(UTC)
    body = f"Thanks for your patience ({tag}); I am checking this with our team."
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        row = snippets.create(s, snippets.SnippetDraft(code=f"PW-{tag}", title=f"Checking {tag}", body=body,
                                                       valid_from=date(2026, 1, 1), valid_to=date(2027, 12, 31)),
                              actor="author", now=now)
        snippets.approve(s, row.id, actor="checker", now=now)
        return row.id, body


def test_a_rep_sends_a_suggested_item_verbatim_and_inserts_a_snippet(
        page: Page, staff_page: Page, live_server: str, engine: Engine, tmp_path: Path) -> None:
    base, hcp, rep = live_server, page, staff_page
    tag = uuid.uuid4().hex[:6]
    items = _library(engine, tmp_path, tag)
    snippet_id, snippet_body = _snippet(engine, tag)

    open_chat(hcp, base)
    chat(hcp, f"Can my patient fly with Ostravel {tag} pens next week?")
    expect(hcp.get_by_test_id("message-bot").first).to_be_visible()
    conv_id, _ = conversation_of(engine, f"Ostravel {tag}")
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        conv = s.get(Conversation, conv_id)
        assert conv is not None
        hcp_row = Hcp(created_at=datetime.now(UTC), name="Dr Price", country="GB",
                      verification_status=VerificationStatus.verified)
        s.add(hcp_row)
        s.flush()
        conv.hcp_id, conv.market = hcp_row.id, "GB"
        handoff_id = open_handoff(s, conv, target="rep", reason="hcp_request", now=datetime.now(UTC)).id

    log_in(rep, base, make_staff(engine, "rep", "Alex Moreno"), "/console/inbox")
    rep.goto(f"{base}/console/inbox/{handoff_id}")
    expect(rep.get_by_test_id("assist-card")).to_contain_text("Claim the conversation")
    rep.get_by_test_id("claim").click()
    expect(rep.locator("#status-text")).to_contain_text("claimed")

    # suggestions: the GB item first, the US-only item never (the HCP is in GB)
    first = rep.get_by_test_id("suggestion").first
    expect(first).to_contain_text(items["gb"]["title"], timeout=60_000)
    expect(first).to_contain_text(items["gb"]["approval_code"])
    expect(rep.get_by_test_id("suggestions")).not_to_contain_text(items["us"]["approval_code"])

    # snippets: bad input first (nothing chosen), then one inserted after what the rep typed
    rep.get_by_test_id("reply-text").fill("Hello Dr Price,")
    rep.get_by_test_id("snippet-insert").click()
    expect(rep.locator("#error")).to_have_text("Choose a snippet to insert.")
    rep.get_by_test_id("snippet-pick").select_option(snippet_id)
    rep.get_by_test_id("snippet-insert").click()
    expect(rep.get_by_test_id("reply-text")).to_have_value(f"Hello Dr Price,\n\n{snippet_body}")
    rep.screenshot(path=str(DOCS_SCREENS / "console-assist.png"), full_page=True)

    # a withdrawn snippet cannot be inserted: a clear message, and the reply box keeps its text
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        snippets.withdraw(s, snippet_id, actor="checker", now=datetime.now(UTC), reason="wording under review")
    rep.get_by_test_id("snippet-pick").select_option(snippet_id)
    rep.get_by_test_id("snippet-insert").click()
    expect(rep.locator("#error")).to_contain_text(f"snippet PW-{tag.upper()} cannot be used: it is withdrawn")
    expect(rep.get_by_test_id("reply-text")).to_have_value(f"Hello Dr Price,\n\n{snippet_body}")

    # one click on Insert sends the approved item verbatim; the HCP sees it with its approval code
    first.get_by_test_id("suggestion-insert").click()
    expect(first.get_by_test_id("suggestion-insert")).to_have_text("Sent")
    expect(hcp.get_by_test_id("message-staff").last).to_contain_text(items["gb"]["body"])
    expect(hcp.get_by_test_id("message-staff").last).to_contain_text(items["gb"]["approval_code"])
    with Session(engine) as s:
        sent = s.scalars(select(Message).where(Message.conversation_id == conv_id,
                                               Message.content_id == items["gb"]["id"])).one()
        assert sent.body.startswith(items["gb"]["body"]) and sent.sender_type == "staff"
        assert s.scalars(select(Message).where(Message.content_id == items["us"]["id"])).all() == []


def test_content_admins_write_and_approve_a_snippet_and_a_refused_form_keeps_the_text(
        staff_page: Page, live_server: str, engine: Engine) -> None:
    base, admin = live_server, staff_page
    tag = uuid.uuid4().hex[:6].upper()
    log_in(admin, base, make_staff(engine, "content_admin", "Jo Author"), "/console/content")
    admin.get_by_test_id("snippets-link").click()
    expect(admin).to_have_url(f"{base}/console/content/snippets")

    text = f"Thanks <em>Doctor</em> — I will call you back today ({tag})."
    admin.get_by_test_id("snippet-code").fill(f"CALLBACK-{tag}")
    admin.get_by_test_id("snippet-title").fill(f"Call back {tag}")
    admin.get_by_test_id("snippet-body").fill("x" * 2500)  # over the limit: refused, nothing saved
    admin.get_by_test_id("snippet-save").click()
    expect(admin.locator(".flash.error")).to_contain_text("longer than 2000 characters")
    expect(admin.get_by_test_id("snippet-title")).to_have_value(f"Call back {tag}")
    expect(admin.get_by_test_id("snippet-code")).to_have_value(f"CALLBACK-{tag}")
    admin.get_by_test_id("snippet-body").fill(text)
    admin.get_by_test_id("snippet-save").click()
    expect(admin).to_have_url(f"{base}/console/content/snippets/CALLBACK-{tag}?done=drafted")
    expect(admin.get_by_test_id("snippet-version")).to_contain_text(text)  # shown as text, not markup
    expect(admin.get_by_test_id("snippet-approve")).to_have_count(0)  # the author cannot approve

    checker = admin.context.browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    try:
        log_in(checker, base, make_staff(engine, "content_admin", "Kim Checker"), "/console/content")
        checker.goto(f"{base}/console/content/snippets/CALLBACK-{tag}")
        checker.get_by_test_id("snippet-approve").click()
        expect(checker.locator(".flash")).to_contain_text("Approved")
        expect(checker.get_by_test_id("snippet-version")).to_contain_text("approved")
        checker.screenshot(path=str(DOCS_SCREENS / "console-snippets.png"), full_page=True)
    finally:
        checker.context.close()
