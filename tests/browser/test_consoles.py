"""The staff consoles in Debian Chromium against the real api (Rasa faked: the humans are the point).

Two browser contexts play the two sides: an HCP on the web chat page and a staff member in a
console. Screenshots of each console go to docs/screens/ (shown in docs/consoles.md).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.conversations.models import Conversation, Message
from api.db import unit_of_work
from api.handoffs.models import Handoff
from api.safety.models import AdverseEvent, MedicalInquiry
from api.safety.screen import ScreenResult
from api.safety.service import apply
from tests.browser.staff_pages import (
    DOCS_SCREENS,
    chat,
    hand_to_rep,
    hcp_says,
    log_in,
    make_staff,
)

Page = Any


def _screen_message(engine: Engine, message_id: int, result: ScreenResult) -> tuple[str | None, str | None]:
    """What the safety screen would have recorded for this message (the fixture app runs the null screen)."""
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        msg = s.get(Message, message_id)
        assert msg is not None
        conv = s.get(Conversation, msg.conversation_id)
        assert conv is not None
        out = apply(s, conversation=conv, message=msg, result=result, now=datetime.now(UTC))
        return out.adverse_event_id, out.medical_inquiry_id


def test_rep_claims_a_handoff_chats_live_with_the_hcp_and_hands_back(
        page: Page, staff_page: Page, live_server: str, engine: Engine) -> None:
    base, hcp, rep = live_server, page, staff_page
    marker = uuid.uuid4().hex[:8]
    conv_id, _ = hcp_says(hcp, base, engine,
                          f"Hello, Dr Okafor here from clinic {marker}. Can someone call me about access?", marker)
    handoff_id = hand_to_rep(engine, conv_id).id

    log_in(rep, base, make_staff(engine, "rep", "Sam Rivera"), "/console/inbox")
    expect(rep.locator(f'[data-testid=handoff-row][data-handoff-id="{handoff_id}"]')).to_be_visible()
    rep.screenshot(path=str(DOCS_SCREENS / "console-inbox.png"))
    rep.goto(f"{base}/console/inbox/{handoff_id}")
    rep.get_by_test_id("claim").click()
    expect(rep.locator("#status-text")).to_contain_text("claimed")
    expect(rep.get_by_test_id("transcript")).to_contain_text(f"clinic {marker}")

    rep.get_by_test_id("reply-text").fill("Hi Dr Okafor, Sam here. How can I help?")
    rep.get_by_test_id("send-reply").click()
    expect(hcp.get_by_test_id("message-staff").last).to_contain_text("Sam here")
    # who is speaking: the person and the team the conversation was handed to
    expect(hcp.get_by_test_id("message-staff").last.locator(".msg-sender")).to_have_text(
        "Sam Rivera · your representative")

    chat(hcp, f"Could you bring samples on Thursday? {marker}-2")
    expect(rep.get_by_test_id("transcript")).to_contain_text(f"{marker}-2")
    rep.screenshot(path=str(DOCS_SCREENS / "console-conversation.png"))

    # a destructive click asks first: dismissed, nothing happens; accepted, it is done
    asked: list[str] = []
    rep.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    rep.get_by_test_id("hand-back").click()
    expect(rep.locator("#status-text")).to_contain_text("claimed")
    assert asked and "Hand this conversation back" in asked[0]
    rep.once("dialog", lambda dialog: dialog.accept())
    rep.get_by_test_id("hand-back").click()
    expect(rep.locator("#status-text")).to_contain_text("handed back")
    with Session(engine) as s:
        handoff = s.get(Handoff, handoff_id)
        assert handoff is not None and handoff.status == "handed_back"
        conv_after = s.get(Conversation, conv_id)
        assert conv_after is not None and conv_after.state == "bot"


def test_medical_reviewer_answers_an_inquiry_and_the_hcp_sees_it(
        page: Page, staff_page: Page, live_server: str, engine: Engine) -> None:
    base, hcp, reviewer = live_server, page, staff_page
    marker = uuid.uuid4().hex[:8]
    _conv_id, msg_id = hcp_says(
        hcp, base, engine, f"Can Cardiovex be used in a 9 year old with familial hypercholesterolaemia? ({marker})",
        marker)
    _ae, inquiry_id = _screen_message(engine, msg_id, ScreenResult(off_label=True, products=("cardiovex",),
                                                                  off_label_reasons=("population",)))
    assert inquiry_id is not None

    log_in(reviewer, base, make_staff(engine, "medical_reviewer", "Dr Lena Hoffmann"), "/console/medical")
    reviewer.goto(f"{base}/console/medical/{inquiry_id}")
    expect(reviewer.locator("body")).to_contain_text(marker)
    reviewer.get_by_role("textbox", name="Answer", exact=True).fill("Cardiovex is not approved for children under 10. "
                                         "Our medical team will call you to discuss the paediatric data.")
    reviewer.screenshot(path=str(DOCS_SCREENS / "console-medical.png"))
    reviewer.get_by_role("button", name="Send answer").click()
    expect(hcp.get_by_test_id("message-staff").last).to_contain_text("not approved for children under 10")
    with Session(engine) as s:
        reference = s.get(MedicalInquiry, inquiry_id).reference  # type: ignore[union-attr]
    # a medical answer speaks for Medical Information, with the inquiry's reference (not "your representative")
    expect(hcp.get_by_test_id("message-staff").last.locator(".msg-sender")).to_have_text(
        f"Medical Information · {reference}")
    with Session(engine) as s:
        inquiry = s.get(MedicalInquiry, inquiry_id)
        assert inquiry is not None and inquiry.status != "open" and inquiry.reviewer_id is not None


def test_safety_and_admin_consoles_render_for_their_roles(
        page: Page, staff_page: Page, live_server: str, engine: Engine) -> None:
    base, hcp, pv = live_server, page, staff_page
    marker = uuid.uuid4().hex[:8]
    _conv_id, msg_id = hcp_says(
        hcp, base, engine, f"My patient developed a severe rash after the second dose of Cardiovex ({marker})", marker)
    case_id, _mi = _screen_message(engine, msg_id, ScreenResult(
        adverse_event=True, ae_categories=("side_effect",), ae_score=0.98, products=("cardiovex",)))
    assert case_id is not None

    log_in(pv, base, make_staff(engine, "safety", "Priya Natarajan"), "/console/safety")
    pv.goto(f"{base}/console/safety/{case_id}")
    expect(pv.locator("body")).to_contain_text(marker)
    with Session(engine) as s:
        case = s.get(AdverseEvent, case_id)
        assert case is not None
        expect(pv.locator("body")).to_contain_text(case.reference)
    pv.screenshot(path=str(DOCS_SCREENS / "console-safety.png"))
    exported = pv.request.get(f"{base}/api/staff/safety/cases/{case_id}/export")
    assert exported.status == 200
    assert marker in json.dumps(exported.json())

    # The PV user is not an admin: the admin console refuses them.
    refused = pv.goto(f"{base}/console/admin")
    assert refused is not None and refused.status == 403
    pv.context.clear_cookies()
    log_in(pv, base, make_staff(engine, "admin", "Alex Admin"), "/console/admin")
    expect(pv.locator("body")).to_contain_text("@halcyon.example")
    pv.screenshot(path=str(DOCS_SCREENS / "console-admin.png"))
