"""KPI queries on a hand-made dataset: every expected number below was worked out by hand."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from feedback import kpis
from feedback.kpis import KpiFilter
from tests.cx.dataset import CANARY_EMAIL, CANARY_PHONE, build


def test_tiles_over_the_whole_window(session: Session) -> None:
    d = build(session)
    t = kpis.tiles(session, KpiFilter(d.since, d.until))
    # CSAT 5, 2, 4 (one unanswered, one before the window)
    assert t.csat.n == 3
    assert t.csat.mean == pytest.approx(11 / 3)
    assert t.csat.satisfied == pytest.approx(2 / 3)
    assert t.csat.distribution == {1: 0, 2: 1, 3: 0, 4: 1, 5: 1}
    # NPS 10, 9, 7, 3, 0, 10: 3 promoters, 1 passive, 2 detractors
    assert (t.nps.n, t.nps.promoters, t.nps.passives, t.nps.detractors) == (6, 3, 1, 2)
    assert t.nps.score == pytest.approx(100 / 6)
    # ratings: helpful, not, helpful, not (the last without an answer id)
    assert (t.helpfulness.numerator, t.helpfulness.denominator) == (2, 4)
    # five questions in the window, two escalated
    assert (t.escalation.numerator, t.escalation.denominator) == (2, 5)
    # five conversations in which the HCP wrote; handoffs in c1, c3, c5; an inquiry in c2
    assert t.conversations == kpis.Conversations(5, 3, 4)
    assert t.conversations.containment.rate == pytest.approx(0.2)
    assert t.conversations.handoff_rate.rate == pytest.approx(0.6)
    # handoffs claimed after 300 s and 900 s, one waiting
    assert (t.handoffs.handoffs, t.handoffs.claimed) == (3, 2)
    assert t.handoffs.time_to_human.median_s == pytest.approx(600)
    assert t.handoffs.time_to_human.p90_s == pytest.approx(840)
    # requests: 3600 s, 43200 s, 129600 s (late) and one open
    r = t.requests
    assert (r.created, r.completed, r.open, r.within_sla) == (4, 3, 1, 2)
    assert r.time_to_resolution.median_s == pytest.approx(43200)
    assert r.time_to_resolution.p90_s == pytest.approx(43200 + 0.8 * (129600 - 43200))


def test_channel_filter_and_breakdown_agree(session: Session) -> None:
    d = build(session)
    wa = kpis.tiles(session, KpiFilter(d.since, d.until, channel="whatsapp"))
    assert wa.csat.n == 1 and wa.csat.mean == 2
    assert wa.nps.score == pytest.approx(25.0)
    assert (wa.helpfulness.numerator, wa.helpfulness.denominator) == (1, 2)
    assert (wa.escalation.numerator, wa.escalation.denominator) == (1, 2)
    assert wa.conversations == kpis.Conversations(3, 2, 2)
    assert (wa.handoffs.handoffs, wa.handoffs.claimed, wa.handoffs.time_to_human.median_s) == (2, 1, 900)
    assert (wa.requests.created, wa.requests.completed, wa.requests.open) == (2, 1, 1)
    assert wa.requests.time_to_resolution.median_s == pytest.approx(129600)

    by = kpis.by_channel(session, KpiFilter(d.since, d.until))
    assert set(by) == {"webchat", "whatsapp"}
    assert by["whatsapp"] == wa
    web = by["webchat"]
    assert web.csat.mean == pytest.approx(4.5)
    assert web.nps.score == pytest.approx(0.0)
    assert web.conversations == kpis.Conversations(2, 1, 2)
    assert web.conversations.containment.rate == 0
    assert (web.escalation.numerator, web.escalation.denominator) == (1, 3)
    assert web.handoffs.time_to_human.median_s == pytest.approx(300)
    assert web.requests.time_to_resolution.median_s == pytest.approx(23400)


def test_product_filter_and_breakdown(session: Session) -> None:
    d = build(session)
    p1 = kpis.tiles(session, KpiFilter(d.since, d.until, product=d.p1))
    assert (p1.csat.n, p1.csat.mean) == (1, 5)
    assert (p1.helpfulness.numerator, p1.helpfulness.denominator) == (1, 2)
    # a1, a3 answered from p1's item, a4 escalated with p1's item on top
    assert (p1.escalation.numerator, p1.escalation.denominator) == (1, 3)
    assert p1.conversations == kpis.Conversations(3, 2, 3)
    assert (p1.requests.created, p1.requests.completed, p1.requests.open) == (3, 2, 1)
    assert p1.nps.product_scoped is False

    by = kpis.by_product(session, KpiFilter(d.since, d.until))
    assert set(by) == {d.p1, d.p2}
    assert by[d.p1] == dataclasses.replace(p1, nps=by[d.p1].nps)
    assert by[d.p1].nps.n == 0          # no NPS per product; with a product filter NPS stays company-wide
    assert p1.nps.n == 6
    p2 = by[d.p2]
    assert (p2.csat.n, p2.csat.mean) == (1, 2)
    assert (p2.helpfulness.numerator, p2.helpfulness.denominator) == (1, 1)
    assert (p2.escalation.numerator, p2.escalation.denominator) == (1, 2)
    assert p2.conversations == kpis.Conversations(2, 1, 1)
    assert p2.conversations.containment.rate == pytest.approx(0.5)


def test_trends_per_day(session: Session) -> None:
    d = build(session)
    f = KpiFilter(d.since, d.until)
    tr = kpis.trends(session, f)
    days = [d.day0.date() + timedelta(days=i) for i in range(3)]
    assert [p.day for p in tr["conversations"]] == days
    assert [p.value for p in tr["conversations"]] == [2, 2, 1]
    assert [p.value for p in tr["containment"]] == [0, 0.5, 0]
    assert [p.value for p in tr["escalation"]] == [pytest.approx(1 / 3), 0.5, None]
    assert [p.value for p in tr["csat"]] == [5, 4, 2]
    assert [p.n for p in tr["nps"]] == [2, 2, 2]


def test_unanswered_topics_are_counted_and_masked(session: Session) -> None:
    d = build(session)
    f = KpiFilter(d.since, d.until)
    masked = kpis.unanswered_topics(session, f, redact=lambda s: s.replace(CANARY_PHONE, "[phone]")
                                    .replace(CANARY_EMAIL, "[email]"))
    assert masked.total == 3 and masked.clustered == 3
    assert sum(t.count for t in masked.topics) == 3
    assert sum(t.escalated for t in masked.topics) == 2 and sum(t.not_helpful for t in masked.topics) == 1
    text = repr(masked)
    assert CANARY_PHONE not in text and CANARY_EMAIL not in text and "[phone]" in text
    # no redactor, no free text at all
    bare = kpis.unanswered_topics(session, f, redact=None)
    assert bare.total == 3 and all(t.examples == [] for t in bare.topics)
    assert CANARY_PHONE not in repr(bare)
    only_wa = kpis.unanswered_topics(session, KpiFilter(d.since, d.until, channel="whatsapp"), redact=None)
    assert only_wa.total == 1


def test_an_empty_window_gives_empty_kpis(session: Session) -> None:
    f = KpiFilter(datetime(1990, 1, 1, tzinfo=UTC), datetime(1990, 1, 8, tzinfo=UTC))
    board = kpis.dashboard(session, f)
    assert board.tiles.csat.n == 0 and board.tiles.csat.mean is None
    assert board.tiles.nps.score is None
    assert board.tiles.conversations.containment.rate is None
    assert board.tiles.handoffs.time_to_human.median_s is None
    assert board.unanswered.total == 0
    assert len(board.trends["conversations"]) == 7
    assert kpis.to_json(board)["tiles"]["csat"]["n"] == 0


def test_a_window_must_be_aware_and_ordered() -> None:
    with pytest.raises(ValueError):
        KpiFilter(datetime(2020, 1, 2), datetime(2020, 1, 3))
    with pytest.raises(ValueError):
        KpiFilter(datetime(2020, 1, 3, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC))
    assert KpiFilter(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 3, tzinfo=UTC)).days == [
        date(2020, 1, 1), date(2020, 1, 2)]
