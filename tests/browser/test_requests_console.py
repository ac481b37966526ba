"""The service-request console in Debian Chromium: a rep resolves an HCP's sample request and the HCP
is told on the web chat and asked for CSAT about that request (Rasa faked: the humans are the point)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.conversations.models import Conversation
from api.db import unit_of_work
from api.requests.models import ServiceRequest
from api.requests.service import create_request
from feedback.models import SurveyResponse
from tests.browser.staff_pages import DOCS_SCREENS, hcp_says, log_in, make_staff

Page = Any


def test_rep_resolves_a_sample_request_and_the_hcp_is_asked_for_csat(
        page: Page, staff_page: Page, live_server: str, engine: Engine) -> None:
    base, hcp, rep = live_server, page, staff_page
    marker = uuid.uuid4().hex[:8]
    conv_id, msg_id = hcp_says(hcp, base, engine, f"Could you send me Cardiovex samples? Clinic {marker}", marker)
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        conv = s.get(Conversation, conv_id)
        assert conv is not None
        row = create_request(s, conv, kind="samples", product="cardiovex", message_id=msg_id,
                             details={"product": "cardiovex", "sample_quantity": "2 boxes",
                                      "delivery_address": f"Clinic {marker}, 1 High Street"},
                             now=datetime.now(UTC))
        request_id, reference = row.id, row.reference

    log_in(rep, base, make_staff(engine, "rep", "Sam Rivera"), "/console/requests")
    listed = rep.locator(f'tr[data-request="{request_id}"]')
    expect(listed).to_contain_text(reference)
    expect(listed.get_by_test_id("sla-badge")).to_have_text("on time")
    rep.screenshot(path=str(DOCS_SCREENS / "console-requests.png"))

    listed.get_by_role("link", name=reference).click()
    expect(rep.locator("body")).to_contain_text(f"Clinic {marker}, 1 High Street")
    rep.get_by_role("button", name="Mark in progress").click()
    expect(rep.get_by_role("button", name="Resolve")).to_be_visible()
    rep.get_by_role("button", name="Resolve").click()
    expect(rep.get_by_role("button", name="Resolve")).to_have_count(0)

    expect(hcp.locator("body")).to_contain_text(f"(reference {reference}): it has been completed")
    with Session(engine) as s:
        done = s.get(ServiceRequest, request_id)
        assert done is not None and done.status == "resolved" and done.completed_at is not None
        surveys = list(s.execute(select(SurveyResponse).where(SurveyResponse.service_request_id == request_id))
                       .scalars())
        assert [sv.kind for sv in surveys] == ["csat"] and surveys[0].score is None  # asked, not yet answered
