"""Every page, at a desktop and a phone size, through axe-core (the copy bundled by
``axe-playwright-python``): no serious or critical violation, a skip link to the main
content, a focus ring a sighted keyboard user can see, and no horizontal scrolling at 390 px.

The data behind the detail pages (a handoff, a medical inquiry, an AE case, a service request,
an HCP waiting for verification) is made through the services, so each page shows real rows.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.conversations.models import Conversation, Message
from api.db import unit_of_work
from api.handoffs.service import open_handoff
from api.requests.service import create_request
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.staff.models import StaffRole
from knowledge.service import load_library
from tests.browser.a11y import blocking_violations, overflow_px
from tests.browser.staff_pages import PASSWORD, hcp_says

Page = Any
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def _focus_ring_px(page: Page) -> float:
    """From the top of the page, Tab to the first focusable element and measure its outline (or ring)."""
    # Put the keyboard's starting point at the very top (the web chat focuses its message box on load).
    page.evaluate("""() => { const b = document.createElement('button'); document.body.prepend(b); b.focus();
                            b.remove(); }""")
    page.keyboard.press("Tab")
    return float(page.evaluate("""() => {
        const el = document.activeElement;
        if (!el || el === document.body) return 0;
        const s = getComputedStyle(el);
        const outline = s.outlineStyle !== 'none' ? parseFloat(s.outlineWidth) : 0;
        const shadow = s.boxShadow && s.boxShadow !== 'none' ? 2 : 0;
        return Math.max(outline, shadow);
    }"""))


def _all_roles_staff(engine: Engine) -> str:
    from api.staff import service as staff_service
    email = f"a11y-{uuid.uuid4().hex[:8]}@halcyon.example"
    with unit_of_work(sessionmaker(bind=engine)) as s:
        staff_service.create(s, email=email, password=PASSWORD, roles=[r.value for r in StaffRole],
                             name="Avery Access", now=datetime.now(UTC))
    return email


def _library_item(tmp_path: Path, marker: str) -> Path:
    item = {"id": f"A11Y-{marker.upper()}", "version": 1, "title": f"Cardiovex {marker} tablet colour",
            "product": "cardiovex", "kind": "faq", "audience": ["hcp"], "markets": ["US", "GB", "DE"],
            "status": "approved", "approval_code": f"HAL-A11Y-{marker.upper()}", "approved_at": "2026-01-01",
            "expires_at": "2028-01-01", "questions": [f"What colour is the {marker} tablet?"],
            "body": f"The {marker} tablet is white and round."}
    path = tmp_path / "library.jsonl"
    path.write_text(json.dumps(item) + "\n")
    return path


def _seed(engine: Engine, base: str, hcp_page: Page, tmp_path: Path) -> dict[str, str]:
    """One conversation with a handoff, an AE case, a medical inquiry and a request; one content item."""
    marker = uuid.uuid4().hex[:8]
    with unit_of_work(sessionmaker(bind=engine)) as s:
        load_library(s, _library_item(tmp_path, marker), actor="a11y-test")
    conv_id, msg_id = hcp_says(
        hcp_page, base, engine,
        f"Ward 7 here ({marker}): a patient had swollen lips after Respizan, and can it be used at 8?", marker)
    now = datetime.now(UTC)
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        msg = s.get(Message, msg_id)
        conv = s.get(Conversation, conv_id)
        assert msg is not None and conv is not None
        out = apply(s, conversation=conv, message=msg, now=now, result=ScreenResult(
            adverse_event=True, ae_categories=("side_effect",), ae_score=0.97, products=("respizan",),
            off_label=True, off_label_reasons=("population",)))
        handoff = open_handoff(s, conv, target="rep", reason="hcp_request", now=now)
        request = create_request(s, conv, kind="samples", details={"quantity": 2}, product="respizan", now=now,
                                 message_id=msg_id)
        assert out.adverse_event_id and out.medical_inquiry_id
        return {"handoff": handoff.id, "case": out.adverse_event_id, "inquiry": out.medical_inquiry_id,
                "request": request.id, "conversation": conv_id,
                "item": f"A11Y-{marker.upper()}"}


def _console_paths(ids: dict[str, str]) -> list[str]:
    return [
        "/console/login", "/console", "/console/inbox", f"/console/inbox/{ids['handoff']}",
        "/console/medical", f"/console/medical/{ids['inquiry']}",
        "/console/safety", f"/console/safety/{ids['case']}", "/console/safety-review",
        "/console/requests", f"/console/requests/{ids['request']}",
        "/console/content", "/console/content/gaps", f"/console/content/items/{ids['item']}",
        "/console/cx", "/console/cx/conversations?drill=handoff", "/console/admin",
        "/console/admin/verifications", "/console/account",
        f"/console/conversations/{ids['conversation']}/transcript",
    ]


def test_every_page_passes_axe_at_desktop_and_phone_width(browser: Any, page: Page, live_server: str,
                                                          engine: Engine, tmp_path: Path) -> None:
    base = live_server
    ids = _seed(engine, base, page, tmp_path)
    email = _all_roles_staff(engine)
    problems: list[str] = []
    for size, (width, height) in SIZES.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(15000)
        pg = context.new_page()
        try:
            for path in ["/"]:
                pg.goto(base + path)
                pg.wait_for_load_state("networkidle")
                problems += [f"{size} {path}: {v}" for v in blocking_violations(pg)]
                if size == "phone" and overflow_px(pg) > 0:
                    problems.append(f"{size} {path}: {overflow_px(pg)} px of horizontal scrolling")
            pg.goto(f"{base}/console/login?next=/console")
            pg.get_by_label("Email").fill(email)
            pg.get_by_label("Password").fill(PASSWORD)
            pg.get_by_role("button", name="Log in").click()
            expect(pg).to_have_url(f"{base}/console")
            for path in _console_paths(ids):
                response = pg.goto(base + path)
                assert response is not None and response.status < 400, (path, response and response.status)
                pg.wait_for_load_state("networkidle")
                problems += [f"{size} {path}: {v}" for v in blocking_violations(pg)]
                if size == "phone" and (over := overflow_px(pg)) > 0:
                    problems.append(f"{size} {path}: {over} px of horizontal scrolling")
        finally:
            context.close()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", ["/console/login", "/console/inbox", "/"])
def test_pages_have_a_skip_link_and_a_visible_focus_ring(browser: Any, live_server: str, engine: Engine,
                                                        path: str) -> None:
    base = live_server
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    try:
        if path != "/console/login" and path.startswith("/console"):
            pg.goto(f"{base}/console/login?next={path}")
            pg.get_by_label("Email").fill(_all_roles_staff(engine))
            pg.get_by_label("Password").fill(PASSWORD)
            pg.get_by_role("button", name="Log in").click()
            expect(pg).to_have_url(base + path)
        else:
            pg.goto(base + path)
        pg.wait_for_load_state("networkidle")
        ring = _focus_ring_px(pg)
        focused = pg.evaluate("[document.activeElement.tagName, document.activeElement.getAttribute('href'),"
                              " document.activeElement.textContent.trim()]")
        assert focused[0] == "A" and str(focused[1]).startswith("#"), focused
        assert "skip" in focused[2].lower(), focused
        assert ring >= 2, f"focus ring {ring}px on {path}"
        target = pg.evaluate(f"!!document.querySelector({focused[1]!r})")
        assert target, f"the skip link points at {focused[1]}, which is not on the page"
    finally:
        context.close()
