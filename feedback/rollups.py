"""Daily CX rollups: the dashboard reads whole past days from here, today (and any day not rolled up) live.

Tables (migration ``0015_cx_rollups``), counts, durations and ids only — no personal data, no free text:

- ``cx_daily``: one row per (UTC day, channel, product) with every additive count the KPIs need
  (CSAT / NPS score histograms, rated / helpful, questions / escalated / unanswered,
  conversations / with handoff / with a human, handoffs / claimed, requests / completed / open /
  within SLA), and the day's handoff / service-request durations in seconds (sorted JSON lists,
  so medians and p90s over any set of days are exact). ``channel = ''`` and ``product = ''`` are
  the "every channel" / "every product" rows, so a conversation about two products counts once
  in the ``''`` row and once in each product's row, exactly as the raw queries count it. Rows
  whose counts are all zero are not kept.
- ``cx_rollup_day``: the days that have been rolled up (a day with no activity has no
  ``cx_daily`` row but is still covered).
- ``cx_rollup_dirty``: days whose rollup may be stale. A covered day is read from the rollup only
  while it is not dirty; dirty days are computed live until the next refresh.
- ``conversation_product``: (conversation, product) for every conversation in which a question
  about the product was answered or escalated (the answered item, for an escalation the top
  candidate): the product dimension of conversations and handoffs as a plain indexed join.

Maintenance:

- Every ORM flush that adds, changes or deletes a row a count depends on marks the UTC day(s)
  before today it counts on as dirty (:func:`_after_flush`, installed by :func:`install`; e.g. a
  late rating for an answer of last week marks the
  rating's day and the answer's day; a handoff marks its own day and its conversation's day), and
  a new answer records its conversation's product.
- :func:`refresh` (run by the app every ``cx_rollup_interval_s`` and by
  ``concierge feedback rollup``) recomputes, one transaction per day: the dirty days, the last
  ``lookback_days`` days (catches writes that bypass the ORM, e.g. bulk loads), and days not yet
  covered within ``backfill_days``. It computes each day with the very queries the dashboard uses
  on the raw tables (``feedback.kpis``), so a rolled-up day gives the same numbers as the raw tables.
- Bulk loads that bypass the ORM (``api.demo.seed``) call :func:`after_bulk_load`.

Known limits: changing a content item's product, or a service request's product after the fact,
is not tracked (``refresh(rebuild=True)`` recomputes everything).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    Integer,
    String,
    Table,
    and_,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, attributes, sessionmaker
from sqlalchemy.orm.base import PASSIVE_NO_INITIALIZE

from api.conversations.models import Conversation
from api.db import Base, UTCDateTime
from api.handoffs.models import Handoff
from api.requests.models import ServiceRequest
from api.safety.models import MedicalInquiry
from feedback.cx_queries import (
    COUNT_FIELDS,
    DURATION_FIELDS,
    EVERY,
    KpiFilter,
    answer_content_id,
    conversation_product,
    raw_counts,
    raw_durations,
    utc_day,
)
from feedback.models import AnswerRating, SurveyResponse
from knowledge.models import Answer, ContentItem

log = logging.getLogger("concierge.cx_rollups")

cx_daily = Table(
    "cx_daily", Base.metadata,
    Column("day", Date, primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("product", String(64), primary_key=True),
    *(Column(name, Integer, nullable=False, server_default="0") for name in COUNT_FIELDS),
    # the day's durations in seconds (sorted), for exact medians / p90 over any set of days
    *(Column(name, JSON, nullable=True) for name in DURATION_FIELDS),
)
cx_rollup_day = Table(
    "cx_rollup_day", Base.metadata,
    Column("day", Date, primary_key=True),
    Column("computed_at", UTCDateTime, nullable=False),
)
cx_rollup_dirty = Table(
    "cx_rollup_dirty", Base.metadata,
    Column("day", Date, primary_key=True),
    Column("marked_at", UTCDateTime, nullable=False),
)
TABLES = (cx_daily, cx_rollup_day, cx_rollup_dirty, conversation_product)
TABLE_NAMES = tuple(t.name for t in TABLES)

# Advisory lock key (PostgreSQL) so two refreshers never rewrite the same day at once.
_LOCK_KEY = 0x43580D41


def _insert_ignore(session: Session, table: Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"CX rollups support PostgreSQL and SQLite, not {dialect}")


def _utc_day(value: datetime | None) -> date | None:
    return value.astimezone(UTC).date() if value is not None else None


def day_start(d: date) -> datetime:
    return datetime.combine(d, time.min, UTC)


# ---------------------------------------------------------------- dirty days


def mark_dirty(session: Session, days: Iterable[date | None], *, now: datetime | None = None) -> int:
    """Mark days whose rollup may be stale (read live until the next refresh)."""
    wanted = sorted({d for d in days if d is not None})
    if not wanted:
        return 0
    at = now or datetime.now(UTC)
    session.connection().execute(_insert_ignore(session, cx_rollup_dirty),
                                 [{"day": d, "marked_at": at} for d in wanted])
    return len(wanted)


def _history_values(obj: Any, attr: str) -> list[Any]:
    """The attribute's current value and, for a changed object, its previous one(s)."""
    hist = attributes.get_history(obj, attr, passive=PASSIVE_NO_INITIALIZE)
    values = [getattr(obj, attr, None)]
    values.extend(hist.deleted or ())
    return values


def _changed(obj: Any, attr: str) -> bool:
    return bool(attributes.get_history(obj, attr, passive=PASSIVE_NO_INITIALIZE).has_changes())


def _answer_content(a: Answer) -> str | None:
    """The item an answer is about, as ``feedback.cx_queries.answer_content_id`` computes it in SQL."""
    if a.content_id is not None:
        return a.content_id
    cands = a.candidates
    if isinstance(cands, list) and cands and isinstance(cands[0], dict):
        value = cands[0].get("content_id")
        return str(value) if value is not None else None
    return None


@dataclass
class _Touched:
    days: set[date] = field(default_factory=set)
    conversations: set[str] = field(default_factory=set)          # their creation day changes
    handoffs_of: set[str] = field(default_factory=set)            # their handoffs' days change
    answers: set[str] = field(default_factory=set)                # their days change
    pairs: list[tuple[str, str]] = field(default_factory=list)    # (conversation, content item)

    def add(self, *values: Any) -> None:
        for v in values:
            if isinstance(v, datetime):
                self.days.add(v.astimezone(UTC).date())


def _collect(session: Session) -> _Touched:
    t = _Touched()
    for obj in session.new:
        _touch(t, obj, new=True)
    for obj in session.dirty:
        _touch(t, obj, new=False)
    for obj in session.deleted:
        _touch(t, obj, new=True)
    return t


def _touch(t: _Touched, obj: Any, *, new: bool) -> None:
    if isinstance(obj, Answer):
        if new:
            t.add(obj.created_at)
            if obj.conversation_id:
                content = _answer_content(obj)
                if content:
                    t.pairs.append((obj.conversation_id, content))
        elif _changed(obj, "decision") or _changed(obj, "created_at") or _changed(obj, "content_id"):
            t.add(*_history_values(obj, "created_at"))
    elif isinstance(obj, AnswerRating):
        if new or _changed(obj, "helpful") or _changed(obj, "created_at") or _changed(obj, "answer_id"):
            t.add(*_history_values(obj, "created_at"))
            t.answers.update(a for a in _history_values(obj, "answer_id") if a)
    elif isinstance(obj, SurveyResponse):
        if new or any(_changed(obj, a) for a in ("score", "answered_at", "kind", "service_request_id")):
            t.add(*_history_values(obj, "answered_at"))
    elif isinstance(obj, Conversation):
        inbound = _history_values(obj, "last_inbound_at")
        if new or _changed(obj, "channel") or _changed(obj, "created_at") or \
                len({v is None for v in inbound}) > 1:
            t.add(*_history_values(obj, "created_at"))
    elif isinstance(obj, Handoff):
        if new or _changed(obj, "claimed_at") or _changed(obj, "created_at") or _changed(obj, "conversation_id"):
            t.add(*_history_values(obj, "created_at"))
        if new or _changed(obj, "conversation_id"):
            t.conversations.update(c for c in _history_values(obj, "conversation_id") if c)
    elif isinstance(obj, MedicalInquiry):
        if new or _changed(obj, "conversation_id"):
            t.conversations.update(c for c in _history_values(obj, "conversation_id") if c)
    elif isinstance(obj, ServiceRequest) and (new or any(
            _changed(obj, a) for a in ("status", "completed_at", "sla_due_at", "created_at", "channel", "product"))):
        t.add(*_history_values(obj, "created_at"))


def _after_flush(session: Session, _ctx: Any) -> None:
    if not (session.new or session.dirty or session.deleted):
        return
    t = _collect(session)
    if not (t.days or t.conversations or t.answers or t.pairs):
        return
    if session.get_bind().dialect.name not in ("postgresql", "sqlite"):
        return
    conn = session.connection()
    if t.pairs:
        new_pairs = 0
        for conv_id, content in t.pairs:
            stmt = _insert_ignore(session, conversation_product).from_select(
                ["conversation_id", "product"],
                select(literal(conv_id, String(32)), ContentItem.product).where(ContentItem.id == content))
            new_pairs += max(0, int(conn.execute(stmt).rowcount or 0))
        if new_pairs:
            # a new product for the conversation: its day (conversations by product) and its
            # handoffs' days (handoffs by product) change
            convs = {c for c, _ in t.pairs}
            t.conversations |= convs
            t.handoffs_of |= convs
    if t.conversations:
        t.add(*conn.execute(select(Conversation.created_at).where(Conversation.id.in_(t.conversations))).scalars())
    if t.handoffs_of:
        t.add(*conn.execute(select(Handoff.created_at).where(Handoff.conversation_id.in_(t.handoffs_of))).scalars())
    if t.answers:
        t.add(*conn.execute(select(Answer.created_at).where(Answer.id.in_(t.answers))).scalars())
    # Today is never read from the rollup (and is recomputed as "yesterday" by every refresh after
    # midnight), so it is not marked: concurrent writers would otherwise queue on its dirty row.
    today = datetime.now(UTC).date()
    mark_dirty(session, (d for d in t.days if d < today))


def install() -> None:
    """From now on every ORM flush in this process marks the rollup days it changes dirty. Called by
    the wiring (``create_app``, the worker process, the ``concierge`` command line, the test suite),
    not at import: ``api.db`` stays free of domains. Installing twice is harmless."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)


# ---------------------------------------------------------------- conversation → product


def sync_conversation_products(session: Session, since: datetime | None) -> int:
    """Add the (conversation, product) pairs of answers created from ``since`` on (all if None)."""
    q = (select(Answer.conversation_id, ContentItem.product)
         .join(ContentItem, ContentItem.id == answer_content_id())
         .where(Answer.conversation_id.is_not(None)).distinct())
    if since is not None:
        q = q.where(Answer.created_at >= since)
    stmt = _insert_ignore(session, conversation_product).from_select(["conversation_id", "product"], q)
    return max(0, int(session.execute(stmt).rowcount or 0))  # type: ignore[attr-defined]


# ---------------------------------------------------------------- reading coverage


def covered_days(session: Session, first: date, last: date) -> set[date]:
    """Days in ``[first, last]`` that are rolled up and not dirty."""
    if last < first:
        return set()
    rows = session.execute(
        select(cx_rollup_day.c.day).where(
            cx_rollup_day.c.day >= first, cx_rollup_day.c.day <= last,
            cx_rollup_day.c.day.not_in(select(cx_rollup_dirty.c.day).where(
                cx_rollup_dirty.c.day >= first, cx_rollup_dirty.c.day <= last)))).scalars()
    return {_as_date(d) for d in rows}


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def read_rows(session: Session, days: Iterable[date], channel: str | None, dim_channel: bool,
              products: tuple[str, ...] | None, *, durations: bool = True) -> list[dict[str, Any]]:
    """``cx_daily`` rows for these days: one channel (or every channel's rows when ``dim_channel``,
    else the ``''`` rows), and the given products (None: every product row); the duration
    lists only when ``durations``."""
    wanted = sorted(set(days))
    if not wanted:
        return []
    conds = [cx_daily.c.day >= wanted[0], cx_daily.c.day <= wanted[-1]]
    if channel is not None:
        conds.append(cx_daily.c.channel == channel)
    elif dim_channel:
        conds.append(cx_daily.c.channel != EVERY)
    else:
        conds.append(cx_daily.c.channel == EVERY)
    if products is not None:
        conds.append(cx_daily.c.product.in_(products))
    keep = set(wanted)
    out = []
    cols = [c for c in cx_daily.columns if durations or c.name not in DURATION_FIELDS]
    for row in session.execute(select(*cols).where(and_(*conds))).mappings():
        d = dict(row)
        d["day"] = _as_date(d["day"])
        if d["day"] in keep:
            out.append(d)
    return out


# ---------------------------------------------------------------- computing a day


def compute_day(session: Session, day: date) -> list[dict[str, Any]]:
    """The ``cx_daily`` rows of one UTC day, from the raw tables (the dashboard's own queries)."""
    f_all = KpiFilter(day_start(day), day_start(day + timedelta(days=1)))
    cells: dict[tuple[str, str], dict[str, int]] = {}
    durs: dict[tuple[str, str], dict[str, list[float]]] = {}

    def put(f: Any, dim: Any, cell_of: Any) -> None:
        for key, counts in raw_counts(session, f, dim).items():
            cell = cell_of(key)
            if cell is not None:
                target = cells.setdefault(cell, dict.fromkeys(COUNT_FIELDS, 0))
                for k, v in counts.items():
                    target[k] += v
        for key, found in raw_durations(session, f, dim).items():
            cell = cell_of(key)
            if cell is not None:
                target_d = durs.setdefault(cell, {n: [] for n in DURATION_FIELDS})
                for n in DURATION_FIELDS:
                    target_d[n].extend(found.get(n, []))

    def named(key: Any) -> bool:
        return isinstance(key, str) and bool(key)

    put(f_all, None, lambda _k: (EVERY, EVERY))
    put(f_all, "channel", lambda k: (k, EVERY) if named(k) else None)
    put(f_all, "product", lambda k: (EVERY, k) if named(k) else None)
    for channel in [c for c, p in cells if c and p == EVERY]:
        f_ch = KpiFilter(f_all.since, f_all.until, channel=channel)
        put(f_ch, "product", lambda k, ch=channel: (ch, k) if named(k) else None)
    rows = []
    for (c, p), counts in sorted(cells.items()):
        if any(counts.values()):
            d = durs.get((c, p), {})
            rows.append({"day": day, "channel": c, "product": p, **counts,
                         **{n: sorted(d[n]) if d.get(n) else None for n in DURATION_FIELDS}})
    return rows


def _lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True   # SQLite: one writer at a time anyway
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}).scalar_one())


def rollup_day(session: Session, day: date, *, now: datetime) -> int:
    """Recompute one day in the session's transaction; returns its row count (-1: another refresher holds it).

    The dirty mark is removed first: a write that marks the day again while this runs keeps
    its mark (PostgreSQL makes it wait for this transaction), so nothing is lost.
    """
    if not _lock(session):
        return -1
    session.execute(delete(cx_rollup_dirty).where(cx_rollup_dirty.c.day == day))
    rows = compute_day(session, day)
    session.execute(delete(cx_daily).where(cx_daily.c.day == day))
    if rows:
        session.execute(insert(cx_daily), rows)
    session.execute(delete(cx_rollup_day).where(cx_rollup_day.c.day == day))
    session.execute(insert(cx_rollup_day), [{"day": day, "computed_at": now}])
    return len(rows)


# ---------------------------------------------------------------- refresh


@dataclass
class RefreshReport:
    days: list[date] = field(default_factory=list)
    rows: int = 0
    pairs: int = 0
    skipped: list[date] = field(default_factory=list)
    empty: int = 0                      # days without activity, covered without computing
    ms: float = 0.0


def days_to_refresh(session: Session, *, now: datetime, lookback_days: int = 2, backfill_days: int = 400,
                    rebuild: bool = False) -> tuple[list[date], list[date]]:
    """(days to recompute: dirty ones and the last ``lookback_days``; days never rolled up within
    ``backfill_days``), newest first; never today (read live) or later."""
    if lookback_days < 0 or backfill_days < 0:
        raise ValueError("lookback_days and backfill_days must not be negative")
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=backfill_days)
    all_days = {first + timedelta(days=i) for i in range((today - first).days)}
    if rebuild:
        return [], sorted(all_days, reverse=True)
    covered = {_as_date(d) for d in session.execute(
        select(cx_rollup_day.c.day).where(cx_rollup_day.c.day >= first)).scalars()}
    dirty = {_as_date(d) for d in session.execute(
        select(cx_rollup_dirty.c.day).where(cx_rollup_dirty.c.day < today)).scalars()}
    recent = {today - timedelta(days=i) for i in range(1, lookback_days + 1)}
    must = dirty | recent
    return sorted(must, reverse=True), sorted(all_days - covered - must, reverse=True)


def active_days(session: Session, first: date, last: date) -> set[date]:
    """Days in ``[first, last]`` with any row a count depends on (one query per table)."""
    since, until = day_start(first), day_start(last + timedelta(days=1))
    found: set[date] = set()
    for col in (Conversation.created_at, Answer.created_at, AnswerRating.created_at, SurveyResponse.answered_at,
                Handoff.created_at, ServiceRequest.created_at):
        day = utc_day(session, col)
        found |= {_as_date(d) for d in session.execute(
            select(day).where(col >= since, col < until).group_by(day)).scalars()}
    return found


def refresh(factory: sessionmaker[Session], *, now: datetime, lookback_days: int = 2, backfill_days: int = 400,
            rebuild: bool = False, max_days: int | None = None) -> RefreshReport:
    """The job: sync conversation products, then recompute the days that need it, one transaction each."""
    import time as _time

    started = _time.perf_counter()
    report = RefreshReport()
    today = now.astimezone(UTC).date()
    with factory.begin() as session:
        since = None if rebuild else day_start(today - timedelta(days=max(lookback_days, 1)))
        report.pairs = sync_conversation_products(session, since)
    with factory() as session:
        must, backfill = days_to_refresh(session, now=now, lookback_days=lookback_days,
                                         backfill_days=backfill_days, rebuild=rebuild)
        active = active_days(session, min(backfill), max(backfill)) if backfill else set()
    empty = [d for d in backfill if d not in active]
    if empty:
        # nothing happened on these days: covered, without rows (a later write marks them dirty)
        with factory.begin() as session:
            session.execute(delete(cx_daily).where(cx_daily.c.day.in_(empty)))
            session.execute(delete(cx_rollup_day).where(cx_rollup_day.c.day.in_(empty)))
            session.execute(insert(cx_rollup_day), [{"day": d, "computed_at": now} for d in empty])
        report.empty = len(empty)
    days = sorted(set(must) | (set(backfill) & active), reverse=True)
    if max_days is not None:
        days = days[:max_days]
    for d in days:
        with factory.begin() as session:
            n = rollup_day(session, d, now=now)
        if n < 0:
            report.skipped.append(d)
        else:
            report.days.append(d)
            report.rows += n
    report.ms = round((_time.perf_counter() - started) * 1000, 1)
    return report


def after_bulk_load(session: Session, first: date, last: date) -> None:
    """After rows were written without the ORM (bulk loads): record products, mark the days dirty."""
    sync_conversation_products(session, day_start(first))
    mark_dirty(session, _days(first, last))


def _days(first: date, last: date) -> Iterator[date]:
    for i in range((last - first).days + 1):
        yield first + timedelta(days=i)


def refresh_counts(session: Session) -> dict[str, int]:
    """Row counts of the rollup tables (for the CLI and the benchmark)."""
    return {t.name: int(session.execute(select(func.count()).select_from(t)).scalar_one()) for t in TABLES}
