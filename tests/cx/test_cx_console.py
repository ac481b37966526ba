"""The CX dashboard over HTTP: cx_analyst only, the hand-made dataset's numbers, filters, empty data, no PII."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from api.audit.models import AuditEvent
from api.db import unit_of_work
from api.staff.models import StaffRole
from tests.consoles.conftest import StaffAccount
from tests.cx.dataset import CANARY_EMAIL, CANARY_NAME, CANARY_PHONE, Crafted, build

JSON = {"accept": "application/json"}


@pytest.fixture()
def crafted(engine: Engine) -> Crafted:
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as session:
        return build(session)


def _window(d: Crafted) -> dict[str, str]:
    last = (d.until - timedelta(days=1)).date()
    return {"days": "custom", "since": d.since.date().isoformat(), "until": last.isoformat()}


@pytest.mark.parametrize("role", [r.value for r in StaffRole if r != StaffRole.cx_analyst])
def test_other_roles_are_refused(role: str, logged_in: Callable[..., tuple[TestClient, StaffAccount, str]]) -> None:
    client, _, _ = logged_in(role)
    assert client.get("/console/cx").status_code == 403
    assert client.get("/api/cx/kpis", headers=JSON).status_code == 403


def test_anonymous_is_sent_to_login(console: TestClient) -> None:
    res = console.get("/console/cx")
    assert res.status_code in (302, 303) and "/console/login" in res.headers["location"]
    assert console.get("/api/cx/kpis", headers=JSON).status_code == 401


def test_the_dashboard_shows_the_hand_computed_kpis(
        crafted: Crafted, logged_in: Callable[..., tuple[TestClient, StaffAccount, str]], engine: Engine) -> None:
    client, account, _ = logged_in("cx_analyst")
    data = client.get("/api/cx/kpis", params=_window(crafted), headers=JSON).json()
    t = data["tiles"]
    assert t["csat"]["n"] == 3 and t["csat"]["mean"] == pytest.approx(11 / 3)
    assert t["csat"]["distribution"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1}
    assert t["nps"]["score"] == pytest.approx(100 / 6) and t["nps"]["n"] == 6
    assert (t["helpfulness"]["helpful"], t["helpfulness"]["rated"]) == (2, 4)
    assert (t["escalation"]["escalated"], t["escalation"]["questions"]) == (2, 5)
    assert t["containment"] == {"rate": pytest.approx(0.2), "contained": 1, "conversations": 5}
    assert t["handoff_rate"]["rate"] == pytest.approx(0.6)
    assert t["time_to_human"]["median_s"] == pytest.approx(600) and t["time_to_human"]["p90_s"] == pytest.approx(840)
    assert t["service_requests"]["median_s"] == pytest.approx(43200)
    assert t["service_requests"]["open"] == 1 and t["service_requests"]["sla_rate"] == pytest.approx(2 / 3)
    assert [p["value"] for p in data["trends"]["conversations"]] == [2, 2, 1]
    assert set(data["by_channel"]) == {"webchat", "whatsapp"}
    assert set(data["by_product"]) == {crafted.p1, crafted.p2}
    assert data["unanswered"]["total"] == 3

    page = client.get("/console/cx", params=_window(crafted))
    assert page.status_code == 200
    html = page.text
    for shown in ("3.67 / 5", "+17", "50%", "20%", "60%", "10 min", "12.0 h", "40%",
                  "2 of 4 rated answers helpful", "1 of 5 conversations without a human"):
        assert shown in html, shown
    assert html.count('data-testid="kpi-tile"') == 8
    assert html.count("<svg") >= 8 and "<title id=\"trend-conversations-title\">" in html
    assert "<desc id=\"dist-csat-desc\">CSAT scores (1–5), responses. 1: 0, 2: 1, 3: 0, 4: 1, 5: 1.</desc>" in html
    with sessionmaker(bind=engine)() as s:
        viewed = s.scalars(select(AuditEvent).where(AuditEvent.action == "cx.dashboard_viewed",
                                                    AuditEvent.actor_id == account.id)).all()
    assert {e.data["view"] for e in viewed} == {"json", "page"}


def test_filters_change_the_numbers(crafted: Crafted,
                                    logged_in: Callable[..., tuple[TestClient, StaffAccount, str]]) -> None:
    client, _, _ = logged_in("cx_analyst")
    wa = client.get("/api/cx/kpis", params={**_window(crafted), "channel": "whatsapp"}, headers=JSON).json()
    assert wa["tiles"]["csat"]["mean"] == 2 and wa["tiles"]["containment"]["conversations"] == 3
    assert list(wa["by_channel"]) == ["whatsapp"]
    p1 = client.get("/api/cx/kpis", params={**_window(crafted), "product": crafted.p1}, headers=JSON).json()
    assert p1["tiles"]["escalation"] == {"rate": pytest.approx(1 / 3), "escalated": 1, "questions": 3}
    assert p1["tiles"]["service_requests"]["created"] == 3
    html = client.get("/console/cx", params={**_window(crafted), "channel": "whatsapp"}).text
    assert "2.00 / 5" in html and 'value="whatsapp" selected' in html


@pytest.mark.parametrize("params", [{"days": "14"}, {"days": "x"}, {"days": "custom"},
                                    {"since": "2020-02-30"}, {"since": "2021-01-02", "until": "2021-01-01"},
                                    {"since": "2019-01-01", "until": "2021-01-01"}, {"channel": "sms"},
                                    {"product": "no-such-product"}])
def test_bad_filters_are_refused(params: dict[str, str],
                                 logged_in: Callable[..., tuple[TestClient, StaffAccount, str]]) -> None:
    client, _, _ = logged_in("cx_analyst")
    res = client.get("/api/cx/kpis", params=params, headers=JSON)
    assert res.status_code == 422 and res.json()["error"]["code"] == "invalid_input"
    assert client.get("/console/cx", params=params).status_code == 422


def test_an_empty_period_renders(logged_in: Callable[..., tuple[TestClient, StaffAccount, str]]) -> None:
    client, _, _ = logged_in("cx_analyst")
    res = client.get("/console/cx", params={"since": "1991-03-01", "until": "1991-03-07"})
    assert res.status_code == 200
    assert res.text.count('data-testid="kpi-tile"') == 8
    assert "no data in this period" in res.text and "Nothing unanswered in this period." in res.text
    data = client.get("/api/cx/kpis", params={"since": "1991-03-01", "until": "1991-03-07"}, headers=JSON).json()
    assert data["tiles"]["csat"]["mean"] is None and len(data["trends"]["csat"]) == 7
    for preset in ("7", "30", "90"):
        assert client.get("/console/cx", params={"days": preset}).status_code == 200


def test_no_personal_data_on_the_page_or_in_json(
        crafted: Crafted, logged_in: Callable[..., tuple[TestClient, StaffAccount, str]], engine: Engine) -> None:
    client, _, _ = logged_in("cx_analyst")
    canaries = (CANARY_PHONE, CANARY_EMAIL, CANARY_NAME, CANARY_PHONE.replace(" ", ""))
    for params in (_window(crafted), {**_window(crafted), "channel": "whatsapp"},
                   {**_window(crafted), "product": crafted.p2}, {"days": "90"}):
        html = client.get("/console/cx", params=params).text
        body = client.get("/api/cx/kpis", params=params, headers=JSON).text
        for canary in canaries:
            assert canary not in html and canary not in body
    with sessionmaker(bind=engine)() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == "cx.dashboard_viewed")).all()
    assert rows and not any(c in repr(r.data) for r in rows for c in canaries)


def test_a_tile_drills_down_to_its_conversations_without_text(
        crafted: Crafted, logged_in: Callable[..., tuple[TestClient, StaffAccount, str]], engine: Engine) -> None:
    client, account, _ = logged_in("cx_analyst")
    page = client.get("/console/cx", params=_window(crafted))
    assert "drill=handoff" in page.text and "drill=contained" in page.text
    # the window's five conversations: handoffs in three, one contained (worked out in tests/cx/dataset.py)
    handed = client.get("/console/cx/conversations", params={**_window(crafted), "drill": "handoff"})
    assert handed.status_code == 200
    assert handed.text.count('<tr data-conversation="') == 3
    contained = client.get("/console/cx/conversations", params={**_window(crafted), "drill": "contained"})
    assert contained.text.count('<tr data-conversation="') == 1
    for text in (handed.text, contained.text):
        assert CANARY_PHONE not in text and CANARY_EMAIL not in text and CANARY_NAME not in text
        assert "/transcript" not in text                      # a CX analyst does not read transcripts
    csv_rows = client.get("/api/cx/conversations.csv", params={**_window(crafted), "drill": "handoff"}).text
    assert len(csv_rows.strip().splitlines()) == 1 + 3
    by_product = client.get("/console/cx/conversations", params={**_window(crafted), "drill": "all",
                                                                 "product": crafted.p2})
    assert 0 < by_product.text.count('<tr data-conversation="') < 5
    bad = client.get("/console/cx/conversations", params={**_window(crafted), "drill": "everything"})
    assert bad.status_code == 422 and "drill must be one of" in bad.text
    with unit_of_work(sessionmaker(bind=engine)) as s:
        seen = s.scalars(select(AuditEvent).where(AuditEvent.action == "cx.drill_down_viewed",
                                                  AuditEvent.actor_id == account.id)).all()
    assert len(seen) >= 3


def test_the_drill_down_is_for_cx_analysts_only(logged_in: Callable[..., tuple[TestClient, StaffAccount, str]]) -> None:
    client, _, _ = logged_in("rep")
    assert client.get("/console/cx/conversations").status_code == 403


def test_a_not_helpful_reason_theme_links_to_its_conversations(
        crafted: Crafted, logged_in: Callable[..., tuple[TestClient, StaffAccount, str]], engine: Engine) -> None:
    from feedback.models import FeedbackTheme, FeedbackThemeRun

    with unit_of_work(sessionmaker(bind=engine)) as s:
        run = FeedbackThemeRun(created_at=crafted.until, since=crafted.since, until=crafted.until, method="test",
                               embedder="none", comments=0, ratings=2, duration_ms=1)
        s.add(run)
        s.flush()
        day = crafted.since.date().isoformat()
        s.add(FeedbackTheme(run_id=run.id, position=0, key="answer_unclear", label="Answer unclear",
                            first_class=False, terms=[], count=2, sentiment=-1.2, trend=[[day, 2, -1.2]], examples=[]))
    client, _, _ = logged_in("cx_analyst")
    page = client.get("/console/cx", params=_window(crafted)).text
    link = re.search(r'data-testid="theme-drill" href="([^"]+)"', page)
    assert link is not None and "theme=answer+unclear" in link.group(1) and "drill=not_helpful" in link.group(1)
    assert client.get(html.unescape(link.group(1))).status_code == 200
    assert "n/a (votes)" in page   # votes have no words: no sentiment is made up for them


def test_a_comment_theme_drills_down_to_the_conversations_its_comments_came_from(
        crafted: Crafted, logged_in: Callable[..., tuple[TestClient, StaffAccount, str]], engine: Engine) -> None:
    from feedback.models import FeedbackComment, FeedbackTheme, FeedbackThemeRun

    with unit_of_work(sessionmaker(bind=engine)) as s:
        comments = s.execute(select(FeedbackComment).where(FeedbackComment.created_at >= crafted.since,
                                                           FeedbackComment.created_at < crafted.until)
                             .order_by(FeedbackComment.id)).scalars().all()
        assert comments
        picked = comments[:1]
        expected = {c.conversation_id for c in picked}
        run = FeedbackThemeRun(created_at=crafted.until + timedelta(minutes=1), since=crafted.since,
                               until=crafted.until, method="test", embedder="none", comments=len(picked), ratings=0,
                               duration_ms=1)
        s.add(run)
        s.flush()
        day = crafted.since.date().isoformat()
        s.add(FeedbackTheme(run_id=run.id, position=0, key="terms:leaflet-reprint", label="Need the leaflet reprinted",
                            first_class=False, terms=["leaflet"], count=1, sentiment=-0.2, trend=[[day, 1, -0.2]],
                            examples=[], members=[f"comment:{c.id}" for c in picked]))
    client, _, _ = logged_in("cx_analyst")
    page = client.get("/console/cx", params=_window(crafted)).text
    link = re.search(r'data-testid="theme-drill" href="([^"]*theme_key=terms%3Aleaflet-reprint[^"]*)"', page)
    assert link is not None
    rows = client.get(html.unescape(link.group(1))).text
    assert {m for m in re.findall(r'<tr data-conversation="([^"]+)"', rows)} == expected
    unknown = client.get("/console/cx/conversations", params={**_window(crafted), "theme_key": "terms:nothing"})
    assert unknown.status_code == 422 and "run the theme job again" in unknown.text
