"""Trends that do not mislead: thin points are not drawn, long windows are weekly, partial bins are
marked, and free text a HCP typed into a request is never shown as a product."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.consoles import cx_charts as charts
from api.requests.models import ServiceRequest
from feedback import kpis
from feedback.kpis import MIN_TREND_N, KpiFilter
from tests.cx.dataset import build


def test_rates_and_means_from_fewer_than_five_responses_are_kept_but_not_drawn(session: Session) -> None:
    d = build(session)
    tr = kpis.trends(session, KpiFilter(d.since, d.until))
    csat = tr["csat"]
    # one or two CSAT answers a day: each daily mean is computed, flagged, and left out of the line
    assert [p.n for p in csat] == [1, 1, 1]
    assert all(p.suppressed and p.value is not None for p in csat)
    assert not any(p.suppressed for p in tr["conversations"])  # a count is a count
    chart = charts.line_chart("t", "CSAT", csat, fmt=charts.one_dp, y_min=1.0, y_max=5.0)
    assert chart.points == [] and chart.empty
    assert all("too few" in value for _, value in chart.rows)
    assert f"fewer than {MIN_TREND_N}" in chart.desc


def test_a_long_window_is_binned_by_week_and_counts_add_up(session: Session) -> None:
    d = build(session)
    f = KpiFilter(d.since - timedelta(days=30), d.since + timedelta(days=33))
    per, bins = kpis.trend_bins(f)
    assert per == "week"
    assert all(start.weekday() == 0 for start, _, _ in bins)
    tr = kpis.trends(session, f)
    whole = kpis.tiles(session, f)
    assert sum(p.value or 0 for p in tr["conversations"]) == whole.conversations.conversations >= 5
    assert sum(p.n for p in tr["csat"]) == whole.csat.n >= 3     # responses summed per week, then averaged
    first_start, first_days, first_partial = bins[0]
    assert first_partial == (first_days[0] != first_start)  # the window cuts the first week unless it starts on Monday


def test_a_day_that_is_not_over_is_partial(session: Session) -> None:
    d = build(session)
    f = KpiFilter(d.since, d.since + timedelta(days=2, hours=5))
    points = kpis.trends(session, f)["conversations"]
    assert [p.partial for p in points] == [False, False, True]
    chart = charts.line_chart("t", "Conversations", points, count=True)
    hollow = [p for p in chart.points if p.partial]
    assert len(hollow) == 1 and "partial" in hollow[0].label
    assert chart.rows[-1][1].endswith("partial")
    assert kpis.to_json(kpis.dashboard(session, f))["trends"]["conversations"][-1]["partial"] is True


def test_free_text_typed_as_a_product_is_not_a_product(session: Session) -> None:
    d = build(session)
    typed = f"two boxes please {uuid.uuid4().hex[:6]}"
    first = session.scalars(select(ServiceRequest).where(ServiceRequest.product == d.p1)).first()
    assert first is not None
    session.add(ServiceRequest(reference=f"SR-{uuid.uuid4().hex[:12]}", kind="samples", team="rep",
                               status="open", conversation_id=first.conversation_id, hcp_id=first.hcp_id,
                               channel=first.channel, product=typed, details={}, created_at=first.created_at,
                               sla_due_at=first.sla_due_at))
    session.flush()
    f = KpiFilter(d.since, d.until)
    by = kpis.by_product(session, f)
    assert typed not in by and set(by) == {d.p1, d.p2}
    assert kpis.tiles(session, f).requests.created == 5  # still counted in the totals


def test_a_gap_cluster_is_named_by_its_most_typical_question() -> None:
    from knowledge.gaps import cluster_questions, typical_label

    asked = [("Is there a liquid formulation of Glucorel for tube feeding?", True, False),
             ("Glucorel liquid formulation for feeding tube patients?", True, False),
             ("liquid Glucorel formulation available?", False, True),
             ("What is the shelf life of Respizan once out of the fridge?", True, False)]
    clusters = cluster_questions(asked, distance_threshold=0.8)
    biggest = clusters[0]
    assert biggest.count == 3
    assert biggest.label in {q for q, _, _ in asked[:3]}          # a real question, not a bag of terms
    assert biggest.examples[0] == biggest.label and biggest.terms
    long = "why " * 60
    assert len(typical_label(long)) <= 90 and typical_label(long).endswith("…")


def test_not_helpful_votes_carry_no_made_up_sentiment(session: Session) -> None:
    from datetime import UTC, datetime

    from feedback.models import FeedbackTheme, FeedbackThemeRun
    from feedback.themes import latest_themes

    since = datetime(1987, 5, 4, tzinfo=UTC)  # a window of its own in the shared database
    until = since + timedelta(days=7)
    run = FeedbackThemeRun(created_at=until, since=since, until=until, method="test", embedder="none",
                           comments=2, ratings=3, duration_ms=1)
    session.add(run)
    session.flush()
    day = since.date().isoformat()
    session.add_all([
        FeedbackTheme(run_id=run.id, position=0, key="answer_unclear", label="Answer unclear", first_class=False,
                      terms=[], count=3, sentiment=-0.6, trend=[[day, 3, -1.8]], examples=[]),
        FeedbackTheme(run_id=run.id, position=1, key="terms:pen", label="The pen jammed twice", first_class=False,
                      terms=["pen"], count=2, sentiment=-0.5, trend=[[day, 2, -1.0]], examples=[]),
    ])
    session.flush()
    views = {v.key: v for v in latest_themes(session, since=since, until=until)}
    assert views["answer_unclear"].sentiment is None       # votes: nothing to score
    assert views["terms:pen"].sentiment == -0.5            # comments: scored words
