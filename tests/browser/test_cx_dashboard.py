"""The CX dashboard in Debian Chromium: a cx_analyst sees KPI tiles and charts over demo data, filters change them.

The demo generator (``api.demo.seed``) fills the last 90 days with a batch of its own; the
screenshot goes to docs/screens/console-cx.png (shown in docs/consoles.md).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.db import unit_of_work
from api.demo import seed as demo
from feedback.themes import run_themes
from knowledge.embedding import SentenceTransformerEmbedder
from knowledge.service import load_library
from tests.browser.staff_pages import DOCS_SCREENS, log_in, make_staff
from tests.conftest import REPO

Page = Any


def _seed(engine: Engine) -> None:
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        load_library(s, REPO / "knowledge" / "content", actor="tester")
    now = datetime.now(UTC)
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        report = demo.seed(s, demo.SeedSpec(hcps=150, days=90, seed=uuid.uuid4().int % 10**9), now=now)
    since = datetime.combine(report.first_day, datetime.min.time(), UTC)
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        run_themes(s, since=since, until=since + timedelta(days=91), embedder=SentenceTransformerEmbedder(), now=now)


def _tile(page: Page, key: str) -> str:
    return str(page.locator(f'[data-testid=kpi-tile][data-kpi="{key}"] [data-testid=kpi-value]').inner_text())


def test_cx_analyst_sees_kpis_and_charts_and_filters_change_them(
        staff_page: Page, live_server: str, engine: Engine) -> None:
    _seed(engine)
    page, base = staff_page, live_server
    page.set_default_timeout(60000)  # the 90-day page computes every panel; the shared machine is slow
    log_in(page, base, make_staff(engine, "cx_analyst", "Casey Lin"), "/console/cx")
    expect(page.get_by_role("heading", name="CX dashboard")).to_be_visible()
    expect(page.get_by_test_id("kpi-tile")).to_have_count(8)
    for key in ("csat", "nps", "helpfulness", "containment", "escalation", "time_to_human"):
        assert _tile(page, key) not in ("", "–"), key
    # charts are real SVG with an accessible name and drawn data
    expect(page.locator("[data-testid=chart] svg[role=img]")).to_have_count(8)
    expect(page.locator('[data-chart="trend-conversations"] polyline').first).to_be_visible()
    expect(page.locator('[data-chart="dist-csat"] rect.bar')).to_have_count(5)
    assert page.locator('[data-chart="trend-containment"] svg > title').text_content() == "Containment per day"
    expect(page.get_by_test_id("by-channel").locator("tbody tr")).to_have_count(2)
    expect(page.get_by_test_id("themes").locator("td.theme-first").first).to_be_visible()
    expect(page.get_by_test_id("unanswered").locator("tbody tr").first).not_to_contain_text("Nothing unanswered")
    page.screenshot(path=str(DOCS_SCREENS / "console-cx.png"), full_page=True)

    all_conversations = page.locator('[data-kpi="containment"] .detail').inner_text()
    page.get_by_test_id("filter-channel").select_option("whatsapp")
    page.get_by_test_id("filter-days").select_option("30")
    page.get_by_test_id("apply-filters").click()
    expect(page).to_have_url(f"{base}/console/cx?days=30&since=&until=&channel=whatsapp&product=")
    expect(page.get_by_test_id("period-text")).to_contain_text("WhatsApp")
    expect(page.get_by_test_id("by-channel").locator("tbody tr")).to_have_count(1)
    assert page.locator('[data-kpi="containment"] .detail').inner_text() != all_conversations

    page.get_by_test_id("filter-days").select_option("custom")
    page.get_by_test_id("filter-since").fill("1992-01-01")
    page.get_by_test_id("filter-until").fill("1992-01-31")
    page.get_by_test_id("apply-filters").click()
    expect(page.get_by_test_id("period-text")).to_contain_text("01 Jan 1992")
    assert _tile(page, "csat") == "–"
