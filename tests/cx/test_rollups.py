"""The CX rollups give the same numbers as the raw tables, for every panel and filter.

Random CX activity is generated over five UTC days of a year no other test uses (products of its
own), the days are rolled up with ``feedback.rollups.rollup_day`` in the test's transaction,
and every panel is computed twice — from the rollups (plus live edges) and purely raw — for
windows on and off midnight, each channel and product. Then late rows arrive for a rolled-up
day (through the ORM: the day is marked dirty and read live until it is refreshed), rows are
written behind the ORM's back (stale until a refresh, which proves the rollup is what is read),
and an HCP is erased (GDPR: counts only, nothing in the rollups changes or needs to).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Integer, String, func, insert, select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation
from api.handoffs.models import Handoff
from api.hcps import gdpr
from api.hcps.models import Hcp
from api.requests.models import ServiceRequest
from api.safety.models import MedicalInquiry
from feedback import kpis, rollups
from feedback.kpis import KpiFilter
from feedback.models import AnswerRating, SurveyResponse
from knowledge.models import Answer, ContentItem

DAYS = 5
CHANNELS = ("webchat", "whatsapp")


@dataclass(frozen=True)
class World:
    day0: datetime
    products: tuple[str, str, str]
    items: dict[str, str]            # content item → product
    hcps: list[str]
    rnd: random.Random

    @property
    def days(self) -> list[date]:
        return [(self.day0 + timedelta(days=i)).date() for i in range(DAYS)]

    def at(self, day: int) -> datetime:
        return self.day0 + timedelta(days=day, seconds=self.rnd.randrange(86400))


def _answer(w: World, conv: Conversation, at: datetime, *, decision: str | None = None) -> Answer:
    item = w.rnd.choice(sorted(w.items))
    decision = decision or w.rnd.choice(("answer", "answer", "escalate"))
    a = Answer(conversation_id=conv.id, created_at=at, query=f"question about {item} {uuid.uuid4().hex[:6]}",
               market="GB", audience="hcp", decision=decision,
               content_id=item if decision == "answer" else None, content_version=1 if decision == "answer" else None,
               score=0.5, candidates=[{"content_id": item, "version": 1, "score": 0.5}])
    return a


def generate(session: Session, seed: int) -> World:
    rnd = random.Random(seed)
    day0 = datetime.combine(date(1981, 1, 1) + timedelta(days=rnd.randrange(5000)), datetime.min.time(), UTC)
    marker = uuid.uuid4().hex[:8]
    products = (f"ru-{marker}-a", f"ru-{marker}-b", f"ru-{marker}-c")
    items = {f"RU-{marker}-{i}": products[i % 3] for i in range(5)}
    session.add_all([ContentItem(id=k, current_version=1, product=p) for k, p in items.items()])
    hcps = [Hcp(name=f"Dr Rollup {marker} {i}", specialty="cardiology", country="GB", created_at=day0)
            for i in range(4)]
    session.add_all(hcps)
    session.flush()
    w = World(day0, products, items, [h.id for h in hcps], rnd)
    for _ in range(70):
        day = rnd.randrange(DAYS)
        created = w.at(day)
        ch = rnd.choice(CHANNELS)
        conv = Conversation(channel=ch, created_at=created, hcp_id=rnd.choice(w.hcps),
                            last_inbound_at=None if rnd.random() < 0.1 else created + timedelta(minutes=1))
        session.add(conv)
        session.flush()
        answers = []
        for _ in range(rnd.randrange(4)):
            # questions come after the conversation started, sometimes on a later day
            a = _answer(w, conv, created + timedelta(minutes=rnd.randrange(1, 60 * 30)))
            session.add(a)
            answers.append(a)
        session.flush()
        for a in answers:
            if rnd.random() < 0.6:
                session.add(AnswerRating(answer_id=a.id, conversation_id=conv.id, subject=f"test:{marker}",
                                         helpful=rnd.random() < 0.6, created_at=a.created_at + timedelta(minutes=2)))
        if rnd.random() < 0.1:
            session.add(AnswerRating(answer_id=None, conversation_id=conv.id, subject=f"test:{marker}",
                                     helpful=False, created_at=created + timedelta(minutes=5)))
        if rnd.random() < 0.35:
            h_at = created + timedelta(minutes=rnd.randrange(1, 600))
            claimed = h_at + timedelta(seconds=rnd.randrange(30, 7200)) if rnd.random() < 0.8 else None
            session.add(Handoff(reference=f"H-{uuid.uuid4().hex[:8]}", conversation_id=conv.id, target="rep",
                                reason="hcp_request", summary="-", status="claimed" if claimed else "queued",
                                sla_due_at=h_at + timedelta(hours=4), claimed_at=claimed, created_at=h_at))
        if rnd.random() < 0.1:
            session.add(MedicalInquiry(reference=f"MI-{uuid.uuid4().hex[:12]}", text="off-label", channel=ch,
                                       conversation_id=conv.id, created_at=created + timedelta(minutes=3)))
        sr = None
        if rnd.random() < 0.4:
            r_at = created + timedelta(minutes=rnd.randrange(1, 300))
            done = r_at + timedelta(seconds=rnd.randrange(600, 3 * 86400)) if rnd.random() < 0.7 else None
            sr = ServiceRequest(reference=f"SR-{uuid.uuid4().hex[:12]}", kind="samples", team="rep",
                                status="completed" if done else rnd.choice(("open", "in_progress")),
                                conversation_id=conv.id, channel=ch, product=rnd.choice(products), details={},
                                created_at=r_at, sla_due_at=r_at + timedelta(days=1), completed_at=done)
            session.add(sr)
            session.flush()
        for kind, top in (("csat", 5), ("nps", 10)):
            if rnd.random() < 0.5:
                answered = created + timedelta(hours=rnd.randrange(1, 60)) if rnd.random() < 0.8 else None
                session.add(SurveyResponse(
                    kind=kind, status="answered" if answered else "asked", conversation_id=conv.id,
                    subject=f"test:{marker}", service_request_id=sr.id if (sr and kind == "csat") else None,
                    score=rnd.randrange(1 if kind == "csat" else 0, top + 1) if answered else None,
                    asked_at=created, answered_at=answered))
    session.flush()
    return w


def roll_up(session: Session, w: World, days: list[date] | None = None) -> None:
    rollups.sync_conversation_products(session, w.day0)
    for d in days or w.days:
        assert rollups.rollup_day(session, d, now=datetime.now(UTC)) >= 0


PANELS: dict[str, Callable[..., Any]] = {
    "tiles": kpis.tiles, "by_channel": kpis.by_channel, "by_product": kpis.by_product, "trends": kpis.trends,
    "unanswered": lambda s, f, **kw: kpis.unanswered_topics(s, f, redact=str.upper, **kw),
}


def windows(w: World) -> list[tuple[datetime, datetime]]:
    d0 = w.day0
    return [(d0, d0 + timedelta(days=DAYS)),                                       # whole days
            (d0 + timedelta(hours=5), d0 + timedelta(days=3, hours=17)),           # off midnight
            (d0 + timedelta(days=1), d0 + timedelta(days=2)),                      # one day
            (d0 - timedelta(days=2), d0 + timedelta(days=DAYS + 2))]               # beyond the data


def assert_same_as_raw(session: Session, w: World, *, channels: tuple[str | None, ...] = (None, *CHANNELS),
                       products: tuple[str | None, ...] | None = None) -> None:
    products = products if products is not None else (None, *w.products)
    for since, until in windows(w):
        for ch in channels:
            for product in products:
                f = KpiFilter(since, until, ch, product)
                for name, fn in PANELS.items():
                    assert fn(session, f, use_rollups=True) == fn(session, f, use_rollups=False), (name, f)


def rollup_rows(session: Session, w: World) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(
        select(rollups.cx_daily).where(rollups.cx_daily.c.day.in_(w.days))
        .order_by(rollups.cx_daily.c.day, rollups.cx_daily.c.channel, rollups.cx_daily.c.product)).mappings()]


def test_rolled_up_days_give_the_raw_numbers_for_every_filter(session: Session) -> None:
    w = generate(session, 11)
    roll_up(session, w)
    assert rollups.covered_days(session, w.days[0], w.days[-1]) == set(w.days)
    # the whole-day window is read from the rollup only
    days, live = kpis._plan(session, KpiFilter(w.day0, w.day0 + timedelta(days=DAYS)), True)
    assert days == w.days and live == []
    # the data is there (not an empty comparison)
    t = kpis.tiles(session, KpiFilter(w.day0, w.day0 + timedelta(days=DAYS)))
    assert t.conversations.conversations > 30 and t.escalation.denominator > 30 and t.csat.n > 5
    assert sum(p.conversations.conversations for p in
               kpis.by_product(session, KpiFilter(w.day0, w.day0 + timedelta(days=DAYS))).values()) > 0
    assert_same_as_raw(session, w)


def test_a_conversation_with_two_products_counts_once_in_total_and_once_per_product(session: Session) -> None:
    w = generate(session, 12)
    c = Conversation(channel="webchat", created_at=w.day0 + timedelta(hours=1),
                     last_inbound_at=w.day0 + timedelta(hours=1, minutes=1))
    session.add(c)
    session.flush()
    a_item = next(i for i, p in w.items.items() if p == w.products[0])
    b_item = next(i for i, p in w.items.items() if p == w.products[1])
    for item in (a_item, b_item):
        session.add(Answer(conversation_id=c.id, created_at=w.day0 + timedelta(hours=2), query="q", market="GB",
                           audience="hcp", decision="answer", content_id=item, content_version=1, score=0.5,
                           candidates=[]))
    session.flush()
    f = KpiFilter(w.day0, w.day0 + timedelta(days=1))
    before_total = kpis.tiles(session, f, use_rollups=False).conversations.conversations
    roll_up(session, w, [w.days[0]])
    assert kpis.tiles(session, f).conversations.conversations == before_total
    pairs = set(session.execute(select(rollups.conversation_product.c.product)
                                .where(rollups.conversation_product.c.conversation_id == c.id)).scalars())
    assert pairs == {w.products[0], w.products[1]}
    assert_same_as_raw(session, w, channels=(None,))


def test_late_rows_for_a_rolled_up_day_are_seen_at_once_and_after_the_refresh(session: Session) -> None:
    w = generate(session, 13)
    roll_up(session, w)
    whole = KpiFilter(w.day0, w.day0 + timedelta(days=DAYS))
    before = kpis.tiles(session, whole)
    day1 = w.days[1]
    conv = session.execute(select(Conversation).where(Conversation.created_at >= rollups.day_start(day1),
                                                      Conversation.created_at < rollups.day_start(w.days[2]),
                                                      Conversation.last_inbound_at.is_not(None))
                           .limit(1)).scalar_one()
    # a week later (all relative to the data), things arrive that count on day 1:
    late = rollups.day_start(day1) + timedelta(hours=23, minutes=59)
    a = _answer(w, conv, late, decision="escalate")
    session.add(a)
    session.flush()
    session.add(AnswerRating(answer_id=a.id, conversation_id=conv.id, subject="test:late", helpful=False,
                             created_at=late))
    session.add(Handoff(reference=f"H-{uuid.uuid4().hex[:8]}", conversation_id=conv.id, target="rep",
                        reason="hcp_request", summary="-", status="queued", sla_due_at=late, claimed_at=None,
                        created_at=late))
    session.add(SurveyResponse(kind="nps", status="answered", conversation_id=conv.id, subject="test:late",
                               score=0, asked_at=late, answered_at=late))
    session.flush()
    dirty = set(session.execute(select(rollups.cx_rollup_dirty.c.day)).scalars())
    assert day1 in {rollups._as_date(d) for d in dirty}
    after = kpis.tiles(session, whole)
    assert after.escalation.denominator == before.escalation.denominator + 1
    assert after.handoffs.handoffs == before.handoffs.handoffs + 1
    assert after.nps.n == before.nps.n + 1
    assert_same_as_raw(session, w, products=(None, w.products[0]))
    # the refresh picks the day up again and clears the mark
    roll_up(session, w, [day1])
    assert day1 in rollups.covered_days(session, day1, day1)
    assert kpis.tiles(session, whole) == after
    assert_same_as_raw(session, w, products=(None, w.products[0]))


def test_a_late_request_completion_marks_its_creation_day(session: Session) -> None:
    w = generate(session, 14)
    roll_up(session, w)
    sr = session.execute(select(ServiceRequest).where(ServiceRequest.product.in_(w.products),
                                                      ServiceRequest.completed_at.is_(None))
                         .limit(1)).scalar_one()
    sr.status = "completed"
    sr.completed_at = sr.created_at + timedelta(days=9)
    session.flush()
    assert sr.created_at.date() not in rollups.covered_days(session, sr.created_at.date(), sr.created_at.date())
    assert_same_as_raw(session, w, channels=(None, sr.channel), products=(None, sr.product))


def test_rows_written_behind_the_orms_back_show_after_a_refresh(session: Session) -> None:
    w = generate(session, 15)
    roll_up(session, w)
    whole = KpiFilter(w.day0, w.day0 + timedelta(days=DAYS))
    before = kpis.tiles(session, whole)
    conv_id = session.execute(select(Conversation.id).where(Conversation.created_at >= w.day0,
                                                            Conversation.last_inbound_at.is_not(None))
                              .limit(1)).scalar_one()
    session.execute(insert(SurveyResponse), [{
        "id": uuid.uuid4().hex, "kind": "csat", "status": "answered", "conversation_id": conv_id,
        "subject": "test:bulk", "score": 1, "asked_at": w.day0, "answered_at": w.day0 + timedelta(hours=3)}])
    # the rollup is what is read: a bulk write is not seen until the day is refreshed
    assert kpis.tiles(session, whole).csat == before.csat
    assert kpis.tiles(session, whole, use_rollups=False).csat.n == before.csat.n + 1
    rollups.after_bulk_load(session, w.days[0], w.days[0])
    assert kpis.tiles(session, whole).csat.n == before.csat.n + 1
    roll_up(session, w, [w.days[0]])
    assert kpis.tiles(session, whole).csat.n == before.csat.n + 1
    assert_same_as_raw(session, w, products=(None,))


def test_gdpr_erasure_changes_no_count_and_the_rollups_hold_no_personal_data(session: Session) -> None:
    w = generate(session, 16)
    roll_up(session, w)
    rows_before = rollup_rows(session, w)
    assert rows_before
    whole = KpiFilter(w.day0, w.day0 + timedelta(days=DAYS))
    raw_before = {name: fn(session, whole, use_rollups=False) for name, fn in PANELS.items() if name != "unanswered"}
    gdpr.erase(session, w.hcps[0], now=datetime.now(UTC), actor="test-dpo")
    session.flush()
    assert rollup_rows(session, w) == rows_before
    for name, fn in PANELS.items():
        if name != "unanswered":
            assert fn(session, whole, use_rollups=False) == raw_before[name], name
    assert_same_as_raw(session, w, products=(None, w.products[1]))
    # refreshing after the erasure gives the same rows: counts only, nothing personal in them
    roll_up(session, w)
    assert rollup_rows(session, w) == rows_before
    for table in (rollups.cx_daily, rollups.cx_rollup_day, rollups.cx_rollup_dirty):
        text_cols = {c.name for c in table.columns if isinstance(c.type, String)}
        assert text_cols <= {"channel", "product"}, table.name
        assert all(isinstance(c.type, Integer) for c in table.columns
                   if c.name not in text_cols | {"day", "computed_at", "marked_at", *rollups.DURATION_FIELDS}), \
            table.name
    # the durations are numbers (seconds), nothing else
    for row in rows_before:
        for name in rollups.DURATION_FIELDS:
            assert all(isinstance(v, float) for v in row[name] or []), name
    assert {c.name for c in rollups.conversation_product.columns} == {"conversation_id", "product"}
    assert set(rollups.TABLE_NAMES) <= gdpr.SWEEP_SKIP


def test_refresh_picks_dirty_recent_and_missing_days(session: Session) -> None:
    now = datetime(2030, 6, 15, 12, tzinfo=UTC)
    today = now.date()
    must, backfill = rollups.days_to_refresh(session, now=now, lookback_days=2, backfill_days=10)
    assert set(must) >= {today - timedelta(days=1), today - timedelta(days=2)}
    assert today not in must and today not in backfill
    assert set(backfill) | set(must) >= {today - timedelta(days=i) for i in range(1, 11)}
    rollups.mark_dirty(session, [today - timedelta(days=30)])
    must, _ = rollups.days_to_refresh(session, now=now, lookback_days=0, backfill_days=0)
    assert today - timedelta(days=30) in must
    with pytest.raises(ValueError):
        rollups.days_to_refresh(session, now=now, lookback_days=-1)


def test_the_refresh_job_rolls_up_in_its_own_transactions(engine: Any) -> None:
    """``refresh`` with a session factory: covers past days, leaves today live, is idempotent."""
    from sqlalchemy.orm import sessionmaker

    factory = sessionmaker(bind=engine, expire_on_commit=False)
    now = datetime(1979, 3, 4, 10, tzinfo=UTC)      # before any test data: days without activity
    try:
        report = rollups.refresh(factory, now=now, lookback_days=1, backfill_days=3)
        assert report.empty + len(report.days) == 3 and not report.skipped
        with factory() as s:
            covered = rollups.covered_days(s, now.date() - timedelta(days=3), now.date())
        assert covered == {now.date() - timedelta(days=i) for i in (1, 2, 3)}
        again = rollups.refresh(factory, now=now, lookback_days=1, backfill_days=3)
        assert again.days == [now.date() - timedelta(days=1)] and again.empty == 0
    finally:
        with factory.begin() as s:
            first = now.date() - timedelta(days=3)
            for t in (rollups.cx_daily, rollups.cx_rollup_day, rollups.cx_rollup_dirty):
                s.execute(t.delete().where(t.c.day >= first, t.c.day <= now.date()))
    with factory() as s:
        assert s.execute(select(func.count()).select_from(rollups.cx_rollup_day)
                         .where(rollups.cx_rollup_day.c.day == now.date())).scalar_one() == 0


def test_writes_for_today_mark_nothing_and_past_days_are_marked(session: Session) -> None:
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    today_days = {now.date()}

    def dirty() -> set[date]:
        return {rollups._as_date(d) for d in session.execute(select(rollups.cx_rollup_dirty.c.day)).scalars()}

    before = dirty()
    session.add(Conversation(channel="webchat", created_at=now, last_inbound_at=now))
    session.flush()
    assert not (dirty() - before) & today_days
    session.add(Conversation(channel="webchat", created_at=yesterday, last_inbound_at=yesterday))
    session.flush()
    assert yesterday.date() in dirty()
