"""The reply screen in the Inbox console, in Debian Chromium against the real api: a rep's blocked
reply shows why and the approved content that fits, stays in the box, cannot be overridden when it
is off-label, and goes out with a recorded reason when it may; bad input gets a plain message.
Screenshot: docs/screens/console-reply-screen.png (docs/consoles.md)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.audit.models import AuditEvent
from api.conversations.models import Message
from api.db import unit_of_work
from api.handoffs import screening
from api.settings import Settings
from knowledge.service import load_library
from tests.browser.staff_pages import DOCS_SCREENS, hand_to_rep, hcp_says, log_in, make_staff
from tests.consoles.handoff_factory import write_library

Page = Any


def _approved_item(engine: Engine, tmp_path: Path, tag: str) -> str:
    item_id = f"PW-SCR-{tag}"
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        load_library(s, write_library(tmp_path, [{
            "id": item_id, "version": 1, "product": "cardiovex", "kind": "faq", "audience": ["hcp"],
            "status": "approved", "approved_at": "2026-01-01", "expires_at": "2099-12-31",
            "markets": ["GB", "US", "DE"], "title": f"Cardiovex dose range {tag}",
            "questions": [f"cardiovex dose range {tag}?"], "approval_code": f"APP-PW-{tag}",
            # shares more of the blocked reply's words than any demo item does (suggestions rank by that)
            "body": f"Honestly, the Cardiovex dose range is 10 to 40 mg a day; the maximum can go up to 40 mg ({tag}).",
        }]))
    return item_id


def test_a_reps_blocked_reply_shows_why_keeps_the_text_and_overrides_only_when_allowed(
        page: Page, staff_page: Page, live_server: str, engine: Engine, settings: Settings, tmp_path: Path) -> None:
    base, hcp, rep = live_server, page, staff_page
    # The app warms its screen at start unless, as here, the safety hook is replaced: warm it now.
    screening.screener_for(settings).warm_up()
    tag = uuid.uuid4().hex[:8].upper()
    item_id = _approved_item(engine, tmp_path, tag)
    marker = uuid.uuid4().hex[:8]
    conv_id, _ = hcp_says(hcp, base, engine, f"Hi, what dose range does cardiovex come in? ref {marker}", marker)
    handoff_id = hand_to_rep(engine, conv_id).id

    log_in(rep, base, make_staff(engine, "rep", "Jordan Blake"), f"/console/inbox/{handoff_id}")
    rep.get_by_test_id("claim").click()
    expect(rep.locator("#status-text")).to_contain_text("claimed")
    box = rep.get_by_test_id("reply-text")

    # bad input: a plain message, nothing lost, nothing sent
    rep.get_by_test_id("send-reply").click()
    expect(rep.locator("#error")).to_contain_text("the message is empty")
    markup = "Please read <a href='http://x.example'>this</a> first"
    box.fill(markup)
    rep.get_by_test_id("send-reply").click()
    expect(rep.locator("#error")).to_contain_text("plain text")
    expect(box).to_have_value(markup)
    long_text = "Cardiovex dosing notes. " * 420  # about 10 000 characters
    box.fill(long_text)
    expect(rep.get_by_test_id("reply-count")).to_contain_text("too long")
    rep.get_by_test_id("send-reply").click()
    expect(rep.locator("#error")).to_contain_text("the limit is 4000")
    expect(box).to_have_value(long_text)

    # off-label and promotional: reasons shown, approved content offered, no override for a rep
    off_label = "Honestly Cardiovex is the safest statin and the maximum dose range can go up to 80 mg a day."
    box.fill(off_label)
    rep.get_by_test_id("send-reply").click()
    expect(rep.get_by_test_id("screen-result")).to_be_visible()
    kinds = rep.get_by_test_id("screen-finding")
    expect(kinds.filter(has_text="Off-label claim")).to_have_count(1)
    expect(kinds.filter(has_text="Promotional claim")).to_have_count(1)
    expect(rep.get_by_test_id("screen-no-override")).to_contain_text("reps cannot override an off-label block")
    expect(rep.locator("#screen-override")).to_be_hidden()
    # approved items on the reply's product that may go to this HCP, the one sharing most words first
    offered = rep.get_by_test_id("screen-suggestions").locator("li")
    expect(offered.first).to_contain_text(f"Cardiovex dose range {tag}")
    expect(offered.first.get_by_role("button", name="Send verbatim")).to_be_visible()
    expect(box).to_have_value(off_label)
    rep.screenshot(path=str(DOCS_SCREENS / "console-reply-screen.png"), full_page=True)

    # the approved item that fits goes out verbatim from the suggestions
    rep.get_by_test_id("screen-suggestions").get_by_test_id("content-item").filter(
        has_text=item_id).get_by_test_id("send-content").click()
    expect(hcp.get_by_test_id("message-staff").last).to_contain_text(f"the maximum can go up to 40 mg ({tag})")

    # personal data the HCP did not give: overridable with a reason, recorded
    contact = "Our regional nurse can help; she is on 07700 900777."
    box.fill(contact)
    rep.get_by_test_id("send-reply").click()
    expect(rep.get_by_test_id("screen-finding").filter(has_text="Personal data")).to_have_count(1)
    expect(rep.locator("#screen-override")).to_be_visible()
    rep.get_by_test_id("override-reason").fill("Her work mobile; she asked me to share it with this HCP.")
    rep.get_by_test_id("override-send").click()
    expect(hcp.get_by_test_id("message-staff").last).to_contain_text("07700 900777")
    expect(box).to_have_value("")
    expect(rep.get_by_test_id("screen-result")).to_be_hidden()

    with Session(engine) as s:
        bodies = s.execute(select(Message.body).where(Message.conversation_id == conv_id,
                                                      Message.sender_type == "staff")).scalars().all()
        assert not any("80 mg" in b for b in bodies)
        actions = [e.action for e in s.execute(select(AuditEvent).where(AuditEvent.subject_id == handoff_id))
                   .scalars()]
        assert actions.count("staff_reply.blocked") == 2 and actions.count("staff_reply.override") == 1
