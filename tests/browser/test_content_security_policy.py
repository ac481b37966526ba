"""Every page works under its strict content security policy: Chromium reports no violation.

The policy forbids inline script and inline style (api/security_headers.py); a template or a script
that slipped one in would be silently broken in the browser. Chromium logs each refusal on the
console, which this test collects while it walks the pages as a member of every role.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.conversations import service as conversations
from api.db import unit_of_work
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.staff import service as staff_service
from api.staff.models import StaffRole
from tests.browser.staff_pages import PASSWORD, log_in

Page = Any
PAGES = ["/console", "/console/inbox", "/console/medical", "/console/safety", "/console/requests", "/console/cx",
         "/console/content", "/console/content/gaps", "/console/admin", "/console/admin/verifications",
         "/console/account"]


def test_no_page_violates_its_content_security_policy(page: Page, live_server: str, engine: Engine) -> None:
    email = f"pw-all-{uuid.uuid4().hex[:8]}@halcyon.example"
    now = datetime.now(UTC)
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        staff_service.create(s, email=email, password=PASSWORD, roles=[str(r) for r in StaffRole],
                             name="Every Role", now=now)
        conv, _ = conversations.create_webchat(s, now=now, market="US")
        msg = conversations.persist_inbound(s, conv, text="rash after cardiovex", now=now).message
        case_id = apply(s, conversation=conv, message=msg, now=now, result=ScreenResult(
            adverse_event=True, ae_categories=("side_effect",), ae_score=0.97, products=("cardiovex",))
        ).adverse_event_id
    violations: list[str] = []
    page.on("console", lambda m: violations.append(f"{page.url}: {m.text}")
            if "Content Security Policy" in m.text else None)
    page.goto(live_server + "/")
    page.wait_for_selector("html[data-webchat-ready=true]")
    log_in(page, live_server, email, "/console")
    for path in [*PAGES, f"/console/safety/{case_id}"]:
        response = page.goto(live_server + path)
        assert response is not None and response.status == 200, path
        assert "content-security-policy" in response.headers
    assert violations == []
