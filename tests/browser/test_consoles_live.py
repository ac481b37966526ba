"""A content admin withdraws an item in the console and the real bot (Rasa 3.6) stops sending it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine

from tests.browser.staff_pages import (
    DOCS_SCREENS,
    chat,
    log_in,
    make_staff,
    open_chat,
)

Page = Any


@pytest.mark.rasa
def test_content_admin_withdraws_an_item_and_the_bot_stops_sending_it(
        page: Page, staff_page: Page, live_rasa_stack_url: str, engine: Engine,
        tmp_path: Path) -> None:
    base, hcp, admin = live_rasa_stack_url, page, staff_page
    word = "zorb" + uuid.uuid4().hex[:6]
    item_id = f"PW-{word.upper()}"
    code = f"HAL-{word.upper()}-01"
    question = f"What is the {word} titration schedule for Cardiovex?"
    item = {"id": item_id, "version": 1, "title": f"Cardiovex {word} titration schedule", "product": "cardiovex",
            "kind": "faq", "audience": ["hcp", "public"], "markets": ["US", "GB", "DE"], "status": "approved",
            "approval_code": code, "approved_at": "2026-01-01", "expires_at": "2028-01-01",
            "questions": [question],
            "body": f"The {word} titration schedule for Cardiovex is described in section 4.2 of the label."}
    library = tmp_path / "library.jsonl"
    library.write_text(json.dumps(item) + "\n")

    log_in(admin, base, make_staff(engine, "content_admin", "Chris Content"), "/console/content")
    admin.get_by_label("Library file").set_input_files(str(library))
    admin.get_by_role("button", name="Validate").click()
    # the impact replay runs the real model over the session's recent questions first
    admin.get_by_role("button", name="Load this library").click(timeout=60000)
    expect(admin.locator("body")).to_contain_text("Loaded library.jsonl: 1 new version(s).")

    open_chat(hcp, base)
    chat(hcp, question)
    answer = hcp.get_by_test_id("message-bot").filter(has_text=word)
    expect(answer.get_by_test_id("approval-code")).to_contain_text(code, timeout=60000)

    admin.goto(f"{base}/console/content/items/{item_id}")
    admin.screenshot(path=str(DOCS_SCREENS / "console-content.png"))
    admin.get_by_label("Reason").fill("Label section renumbered; superseded by the new SmPC.")
    admin.once("dialog", lambda dialog: dialog.accept())   # "Withdraw v1 of …? HCPs stop receiving it"
    admin.get_by_role("button", name="Withdraw v1").click()
    expect(admin.locator("body")).to_contain_text("withdrawn")

    before = hcp.get_by_test_id("message-bot").count()
    chat(hcp, question)
    expect(hcp.get_by_test_id("message-bot")).not_to_have_count(before, timeout=60000)
    hcp.wait_for_timeout(1500)
    codes = hcp.get_by_test_id("approval-code").all_text_contents()
    assert sum(code in c for c in codes) == 1, codes  # only the answer given before the withdrawal
