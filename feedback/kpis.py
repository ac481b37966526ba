"""CX KPIs for the dashboard: aggregated in the database, on SQLite and PostgreSQL alike.

Every KPI takes a :class:`KpiFilter` (a half-open UTC window ``[since, until)`` plus an optional
channel and product) and can be grouped by channel, product or UTC day, so the tiles, the
breakdown tables and the trend charts come from the same queries. Definitions:

- **CSAT**: answered CSAT surveys (1-5) by ``answered_at``; mean, distribution, n, and the share
  of 4-5 ("satisfied"). Product: the product of the service request the survey rates.
- **NPS**: answered NPS surveys (0-10) by ``answered_at``: % promoters (9-10) - % detractors
  (0-6). NPS is about the relationship, not a product: it has no product breakdown and ignores
  the product filter (``product_scoped=False``).
- **Answer helpfulness**: ratings by ``created_at``: helpful / rated. Product: the rated
  answer's content item.
- **Escalation rate**: every question the knowledge service decided on (``answer`` rows) by
  ``created_at``: escalated / all. Product: the answered item's product, for escalations the
  top candidate's.
- **Containment**: conversations created in the window in which the HCP wrote at least once:
  share with neither a handoff nor a medical inquiry (nobody from the company had to step in).
  **Handoff rate**: share with a handoff. Product: conversations in which a question about the
  product was answered or escalated (at any time: the ``conversation_product`` table).
- **Time to human**: handoffs created in the window: created → claimed, median and p90 (s).
- **Service-request time to resolution**: requests created in the window: created → completed,
  median and p90 (s), open count, share completed within the SLA.

Percentiles interpolate linearly between closest ranks (as numpy's default and PostgreSQL's
``percentile_cont``), computed with window functions so only two rows per group leave the DB.

Where the numbers come from: every KPI but the duration percentiles is made of counts that add
up over days. Whole UTC days that ``feedback.rollups`` has rolled up (and that are not marked
dirty since) are read from its ``cx_daily`` table; the rest of the window — today, the edges
of a window not on midnight, days not rolled up yet or dirty — is computed live from the raw
tables with the same queries (:func:`raw_counts`). The percentiles (time to human, time to
resolution) are always computed from the raw handoff / service-request rows of the window
(tens of thousands at most, indexed by ``created_at``). Every panel takes ``use_rollups=False``
for the purely raw computation.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import Date, Float, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from api.conversations.models import Conversation
from api.handoffs.models import Handoff
from api.requests.models import RequestStatus, ServiceRequest
from api.safety.models import MedicalInquiry
from feedback import rollups
from feedback.models import AnswerRating, SurveyKind, SurveyResponse
from knowledge.models import Answer, ContentItem, Decision

Dim = Literal["channel", "product", "day"] | None
CHANNELS = ("webchat", "whatsapp")
ALL = "all"
# The top-unanswered panel clusters at most this many recent questions (agglomerative clustering
# is quadratic); the count of all unanswered questions in the window is exact.
MAX_GAP_QUESTIONS = 300
RECENT_GAP_DAYS = 7


class ThemeLike(Protocol):
    key: str
    label: str
    terms: list[str]
    count: int
    trend: list[tuple[date, int]]
    examples: list[str]
    sentiment: float


@dataclass(frozen=True)
class KpiFilter:
    since: datetime
    until: datetime
    channel: str | None = None
    product: str | None = None

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("KPI windows need timezone-aware datetimes")
        if self.until <= self.since:
            raise ValueError("the window must end after it starts")

    @property
    def days(self) -> list[date]:
        first = self.since.astimezone(UTC).date()
        last = (self.until.astimezone(UTC) - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Csat:
    n: int
    mean: float | None
    satisfied: float | None           # share of 4-5
    distribution: dict[int, int]      # score → count, 1..5


@dataclass(frozen=True)
class Nps:
    n: int
    score: float | None               # -100..100
    promoters: int
    passives: int
    detractors: int
    distribution: dict[int, int]      # score → count, 0..10
    product_scoped: bool = False      # NPS never narrows by product (see the module docstring)


@dataclass(frozen=True)
class Rate:
    numerator: int
    denominator: int

    @property
    def rate(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None


@dataclass(frozen=True)
class Durations:
    n: int
    median_s: float | None
    p90_s: float | None


@dataclass(frozen=True)
class Conversations:
    conversations: int
    with_handoff: int
    with_human: int                   # handoff or medical inquiry

    @property
    def containment(self) -> Rate:
        return Rate(self.conversations - self.with_human, self.conversations)

    @property
    def handoff_rate(self) -> Rate:
        return Rate(self.with_handoff, self.conversations)


@dataclass(frozen=True)
class Handoffs:
    handoffs: int
    claimed: int
    time_to_human: Durations


@dataclass(frozen=True)
class Requests:
    created: int
    completed: int
    open: int
    within_sla: int
    time_to_resolution: Durations

    @property
    def sla_rate(self) -> Rate:
        return Rate(self.within_sla, self.completed)


@dataclass(frozen=True)
class Tiles:
    csat: Csat
    nps: Nps
    helpfulness: Rate
    escalation: Rate
    conversations: Conversations
    handoffs: Handoffs
    requests: Requests


@dataclass(frozen=True)
class DayPoint:
    day: date
    value: float | None
    n: int


@dataclass(frozen=True)
class Topic:
    label: str
    count: int
    escalated: int
    not_helpful: int
    examples: list[str]


@dataclass(frozen=True)
class Topics:
    total: int                        # unanswered questions in the window (escalated or rated not helpful)
    clustered: int                    # how many of them (the most recent) were clustered
    topics: list[Topic]


@dataclass(frozen=True)
class Theme:
    key: str
    label: str
    terms: list[str]
    count: int
    trend: list[tuple[date, int]]
    examples: list[str]
    sentiment: float
    first_class: bool = False         # one of the themes the business acts on (wants a human, ...)


@dataclass(frozen=True)
class Themes:
    available: bool                   # False until the theme job (feedback.themes) exists
    themes: list[Theme] = field(default_factory=list)


# ---------------------------------------------------------------- SQL helpers


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _day(session: Session, col: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column."""
    if _dialect(session) == "postgresql":
        return cast(func.timezone("UTC", col), Date)
    return func.date(col)


def _seconds(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    if _dialect(session) == "postgresql":
        return cast(func.extract("epoch", end - start), Float)
    # julianday is a float of days: round to milliseconds so whole seconds stay whole
    return cast(func.round((func.julianday(end) - func.julianday(start)) * 86400.0, 3), Float)


def _as_day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _key(dim: Dim, value: Any) -> Any:
    if dim == "day":
        return _as_day(value)
    return value if value is not None else None


def _answer_content_id() -> ColumnElement[Any]:
    """The item an answer is about: the one sent, for an escalation the top candidate."""
    return func.coalesce(Answer.content_id, Answer.candidates[0]["content_id"].as_string())


def _product_pairs() -> Any:
    """(conversation_id, product) for conversations with a question about a product.

    The ``conversation_product`` table (``feedback.rollups``): one row per conversation and
    product of any question answered or escalated in it.
    """
    return rollups.conversation_product.alias("conv_product")


def _grouped(stmt: Any, dim_col: Any) -> Any:
    if dim_col is None:
        return stmt.add_columns(literal(ALL).label("grp"))
    return stmt.add_columns(dim_col.label("grp")).group_by(dim_col)


def percentiles(values: Sequence[float], ps: Sequence[tuple[int, int]] = ((1, 2), (9, 10))) -> list[float | None]:
    """Percentiles of ``values``, linear between closest ranks (numpy's default, ``percentile_cont``).

    ``ps`` are fractions (num, den); integer arithmetic picks the two ranks to interpolate
    between. The rolled-up and the raw path both come here with the same multiset of values,
    so they give the same floats.
    """
    ordered = sorted(values)
    n = len(ordered)
    out: list[float | None] = []
    for num, den in ps:
        if not n:
            out.append(None)
            continue
        k = (n - 1) * num // den
        frac = (n - 1) * num / den - k
        lo = ordered[k]
        hi = ordered[k + 1] if k + 1 < n else lo
        out.append(lo + (hi - lo) * frac)
    return out


# ---------------------------------------------------------------- additive counts from the raw tables
#
# Every KPI except the duration percentiles is a ratio or histogram of counts that add up over
# days, so a window = rolled-up whole days + live segments. ``raw_counts`` is the computation
# on the raw tables; ``feedback.rollups`` stores its per-day results.

Counts = dict[str, int]


def _csat_counts(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, Counts]:
    sr = SurveyResponse
    dim_col = {None: None, "channel": Conversation.channel, "product": ServiceRequest.product,
               "day": _day(session, sr.answered_at)}[dim]
    stmt = (select(sr.score, func.count().label("n"))
            .where(sr.kind == SurveyKind.csat, sr.score.is_not(None),
                   sr.answered_at >= f.since, sr.answered_at < f.until)
            .group_by(sr.score))
    if dim == "channel" or f.channel:
        stmt = stmt.join(Conversation, Conversation.id == sr.conversation_id)
    if dim == "product" or f.product:
        stmt = stmt.outerjoin(ServiceRequest, ServiceRequest.id == sr.service_request_id)
    if f.channel:
        stmt = stmt.where(Conversation.channel == f.channel)
    if f.product:
        stmt = stmt.where(ServiceRequest.product == f.product)
    return _score_histogram(session, _grouped(stmt, dim_col), dim, "csat", range(1, 6))


def _nps_counts(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, Counts]:
    if dim == "product":
        return {}
    sr = SurveyResponse
    dim_col = {None: None, "channel": Conversation.channel, "day": _day(session, sr.answered_at)}[dim]
    stmt = (select(sr.score, func.count().label("n"))
            .where(sr.kind == SurveyKind.nps, sr.score.is_not(None),
                   sr.answered_at >= f.since, sr.answered_at < f.until)
            .group_by(sr.score))
    if dim == "channel" or f.channel:
        stmt = stmt.join(Conversation, Conversation.id == sr.conversation_id)
    if f.channel:
        stmt = stmt.where(Conversation.channel == f.channel)
    return _score_histogram(session, _grouped(stmt, dim_col), dim, "nps", range(0, 11))


def _score_histogram(session: Session, stmt: Any, dim: Dim, prefix: str, scores: range) -> dict[Any, Counts]:
    """``{group: {"<prefix>_<score>": n}}`` from rows ``(score, n, group)``; scores outside ``scores`` dropped."""
    out: dict[Any, Counts] = {}
    for score, n, grp in session.execute(stmt):
        if int(score) in scores:
            cell = out.setdefault(_key(dim, grp), {})
            cell[f"{prefix}_{int(score)}"] = cell.get(f"{prefix}_{int(score)}", 0) + int(n)
    return out


def _helpfulness_counts(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, Counts]:
    ar = AnswerRating
    dim_col = {None: None, "channel": Conversation.channel, "product": ContentItem.product,
               "day": _day(session, ar.created_at)}[dim]
    stmt = (select(func.coalesce(func.sum(case((ar.helpful.is_(True), 1), else_=0)), 0), func.count())
            .select_from(ar).where(ar.created_at >= f.since, ar.created_at < f.until))
    if dim == "channel" or f.channel:
        stmt = stmt.join(Conversation, Conversation.id == ar.conversation_id)
    if dim == "product" or f.product:
        stmt = (stmt.join(Answer, Answer.id == ar.answer_id)
                .join(ContentItem, ContentItem.id == Answer.content_id))
    if f.channel:
        stmt = stmt.where(Conversation.channel == f.channel)
    if f.product:
        stmt = stmt.where(ContentItem.product == f.product)
    return {_key(dim, grp): {"helpful": int(yes), "rated": int(n)}
            for yes, n, grp in session.execute(_grouped(stmt, dim_col)) if n}


def _unanswered(f: KpiFilter) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """(escalated, rated not helpful): a question is unanswered when either holds.

    A rating comes after its answer, so only ratings from the window's start on are looked at.
    """
    rated_no = (select(AnswerRating.answer_id).where(AnswerRating.helpful.is_(False),
                                                     AnswerRating.answer_id.is_not(None),
                                                     AnswerRating.created_at >= f.since))
    return Answer.decision == Decision.escalate, Answer.id.in_(rated_no)


def _escalation_counts(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, Counts]:
    dim_col = {None: None, "channel": Conversation.channel, "product": ContentItem.product,
               "day": _day(session, Answer.created_at)}[dim]
    escalated, unhelpful = _unanswered(f)
    stmt = (select(func.coalesce(func.sum(case((escalated, 1), else_=0)), 0),
                   func.coalesce(func.sum(case((or_(escalated, unhelpful), 1), else_=0)), 0),
                   func.count())
            .where(Answer.created_at >= f.since, Answer.created_at < f.until))
    if dim == "channel" or f.channel:
        stmt = stmt.join(Conversation, Conversation.id == Answer.conversation_id)
    if dim == "product" or f.product:
        stmt = stmt.join(ContentItem, ContentItem.id == _answer_content_id())
    if f.channel:
        stmt = stmt.where(Conversation.channel == f.channel)
    if f.product:
        stmt = stmt.where(ContentItem.product == f.product)
    return {_key(dim, grp): {"escalated": int(esc), "unanswered": int(un), "questions": int(n)}
            for esc, un, n, grp in session.execute(_grouped(stmt, dim_col)) if n}


def _conversation_counts(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, Counts]:
    c = Conversation
    # one hash join against the window's handoff / inquiry sets (not an EXISTS per conversation)
    handed = (select(Handoff.conversation_id.label("cid")).where(Handoff.created_at >= f.since)
              .distinct().subquery("handed"))
    inquired = (select(MedicalInquiry.conversation_id.label("cid"))
                .where(MedicalInquiry.created_at >= f.since, MedicalInquiry.conversation_id.is_not(None))
                .distinct().subquery("inquired"))
    has_handoff = handed.c.cid.is_not(None)
    has_inquiry = inquired.c.cid.is_not(None)
    pairs = _product_pairs() if (dim == "product" or f.product) else None
    dim_col = {None: None, "channel": c.channel, "product": pairs.c.product if pairs is not None else None,
               "day": _day(session, c.created_at)}[dim]
    stmt = (select(func.count(),
                   func.coalesce(func.sum(case((has_handoff, 1), else_=0)), 0),
                   func.coalesce(func.sum(case((or_(has_handoff, has_inquiry), 1), else_=0)), 0))
            .select_from(c)
            .outerjoin(handed, handed.c.cid == c.id).outerjoin(inquired, inquired.c.cid == c.id)
            .where(c.created_at >= f.since, c.created_at < f.until, c.last_inbound_at.is_not(None)))
    if pairs is not None:
        stmt = stmt.join(pairs, pairs.c.conversation_id == c.id)
        if f.product:
            stmt = stmt.where(pairs.c.product == f.product)
    if f.channel:
        stmt = stmt.where(c.channel == f.channel)
    return {_key(dim, grp): {"conversations": int(n), "conv_handoff": int(h), "conv_human": int(hu)}
            for n, h, hu, grp in session.execute(_grouped(stmt, dim_col)) if n}


def _handoff_scope(session: Session, f: KpiFilter, dim: Dim) -> tuple[Callable[[Any], Any], Any]:
    h = Handoff
    pairs = _product_pairs() if (dim == "product" or f.product) else None
    dim_col = {None: None, "channel": Conversation.channel,
               "product": pairs.c.product if pairs is not None else None,
               "day": _day(session, h.created_at)}[dim]

    def scoped(stmt: Any) -> Any:
        stmt = stmt.where(h.created_at >= f.since, h.created_at < f.until)
        if dim == "channel" or f.channel:   # (every handoff has a conversation: no join needed otherwise)
            stmt = stmt.join(Conversation, Conversation.id == h.conversation_id)
        if pairs is not None:
            stmt = stmt.join(pairs, pairs.c.conversation_id == h.conversation_id)
            if f.product:
                stmt = stmt.where(pairs.c.product == f.product)
        if f.channel:
            stmt = stmt.where(Conversation.channel == f.channel)
        return stmt

    return scoped, dim_col


def _handoff_counts(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, Counts]:
    scoped, dim_col = _handoff_scope(session, f, dim)
    counts = scoped(select(func.count(), func.count(Handoff.claimed_at)).select_from(Handoff))
    return {_key(dim, grp): {"handoffs": int(n), "handoffs_claimed": int(claimed)}
            for n, claimed, grp in session.execute(_grouped(counts, dim_col)) if n}


def _handoff_durations(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, list[float]]:
    """Time to human (created → claimed) in seconds, every claimed handoff of the window, per group."""
    h = Handoff
    scoped, dim_col = _handoff_scope(session, f, dim)
    grp_expr = dim_col if dim_col is not None else literal(ALL)
    stmt = scoped(select(grp_expr.label("grp"), _seconds(session, h.created_at, h.claimed_at).label("dur"))
                  .select_from(h).where(h.claimed_at.is_not(None)))
    out: dict[Any, list[float]] = {}
    for grp, dur in session.execute(stmt):
        out.setdefault(_key(dim, grp), []).append(float(dur))
    return out


def _request_scope(session: Session, f: KpiFilter, dim: Dim) -> tuple[Callable[[Any], Any], Any]:
    r = ServiceRequest
    dim_col = {None: None, "channel": r.channel, "product": r.product, "day": _day(session, r.created_at)}[dim]

    def scoped(stmt: Any) -> Any:
        stmt = stmt.where(r.created_at >= f.since, r.created_at < f.until)
        if f.channel:
            stmt = stmt.where(r.channel == f.channel)
        if f.product:
            stmt = stmt.where(r.product == f.product)
        return stmt

    return scoped, dim_col


def _request_counts(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, Counts]:
    r = ServiceRequest
    scoped, dim_col = _request_scope(session, f, dim)
    done = r.completed_at.is_not(None)
    counts = scoped(select(
        func.count(), func.count(r.completed_at),
        func.coalesce(func.sum(case((r.status.in_((RequestStatus.open, RequestStatus.in_progress)), 1), else_=0)), 0),
        func.coalesce(func.sum(case((and_(done, r.completed_at <= r.sla_due_at), 1), else_=0)), 0),
    ).select_from(r))
    return {_key(dim, grp): {"requests": int(n), "requests_completed": int(completed), "requests_open": int(open_),
                             "requests_sla": int(in_sla)}
            for n, completed, open_, in_sla, grp in session.execute(_grouped(counts, dim_col)) if n}


def _request_durations(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, list[float]]:
    """Service-request time to resolution (created → completed) in seconds, per group."""
    r = ServiceRequest
    scoped, dim_col = _request_scope(session, f, dim)
    grp_expr = dim_col if dim_col is not None else literal(ALL)
    stmt = scoped(select(grp_expr.label("grp"), _seconds(session, r.created_at, r.completed_at).label("dur"))
                  .select_from(r).where(r.completed_at.is_not(None)))
    out: dict[Any, list[float]] = {}
    for grp, dur in session.execute(stmt):
        out.setdefault(_key(dim, grp), []).append(float(dur))
    return out


DURATIONS: dict[str, Callable[[Session, KpiFilter, Dim], dict[Any, list[float]]]] = {
    "handoff_secs": _handoff_durations, "request_secs": _request_durations,
}


def raw_durations(session: Session, f: KpiFilter, dim: Dim = None) -> dict[Any, dict[str, list[float]]]:
    """Every duration of the window per group, from the raw tables: {group: {"handoff_secs": [...], ...}}."""
    out: dict[Any, dict[str, list[float]]] = {}
    for name, fn in DURATIONS.items():
        for key, values in fn(session, f, dim).items():
            out.setdefault(key, {n: [] for n in DURATIONS})[name].extend(values)
    return out


METRICS: dict[str, Callable[[Session, KpiFilter, Dim], dict[Any, Counts]]] = {
    "csat": _csat_counts, "nps": _nps_counts, "helpfulness": _helpfulness_counts,
    "escalation": _escalation_counts, "conversations": _conversation_counts,
    "handoffs": _handoff_counts, "requests": _request_counts,
}


def _add(out: dict[Any, Counts], key: Any, counts: dict[str, int], only: Iterable[str] | None = None) -> None:
    cell = out.setdefault(key, dict.fromkeys(rollups.COUNT_FIELDS, 0))
    for k in (only if only is not None else counts):
        cell[k] += int(counts.get(k, 0))


def raw_counts(session: Session, f: KpiFilter, dim: Dim = None,
               metrics: Iterable[str] = tuple(METRICS)) -> dict[Any, Counts]:
    """Every additive count per group, computed on the raw tables (groups with no rows left out)."""
    out: dict[Any, Counts] = {}
    for name in metrics:
        for key, counts in METRICS[name](session, f, dim).items():
            _add(out, key, counts)
    return out


def _plan(session: Session, f: KpiFilter, use_rollups: bool) -> tuple[list[date], list[KpiFilter]]:
    """Whole days of the window read from the rollup, and the live windows left (today, dirty days, edges)."""
    if not use_rollups:
        return [], [f]
    since, until = f.since.astimezone(UTC), f.until.astimezone(UTC)
    first = since.date() if since == rollups.day_start(since.date()) else since.date() + timedelta(days=1)
    last = until.date() - timedelta(days=1)      # the day before ``until``'s is whole
    covered = sorted(rollups.covered_days(session, first, last))
    live: list[KpiFilter] = []
    cursor = since
    for d in covered:
        start = rollups.day_start(d)
        if start > cursor:
            live.append(KpiFilter(cursor, start, f.channel, f.product))
        cursor = start + timedelta(days=1)
    if cursor < until:
        live.append(KpiFilter(cursor, until, f.channel, f.product))
    return covered, live


Durs = dict[str, list[float]]


def counts(session: Session, f: KpiFilter, dim: Dim = None, *, use_rollups: bool = True) -> dict[Any, Counts]:
    """Every additive count per group: rolled-up whole days plus the rest computed live.

    ``use_rollups=False`` is the raw computation; both give the same numbers once the days are
    refreshed (``tests/cx/test_rollups.py``).
    """
    return _gather(session, f, dim, use_rollups, durations=False)[0]


def _gather(session: Session, f: KpiFilter, dim: Dim, use_rollups: bool, *,
            durations: bool) -> tuple[dict[Any, Counts], dict[Any, Durs]]:
    days, live = _plan(session, f, use_rollups)
    out: dict[Any, Counts] = {}
    durs: dict[Any, Durs] = {}

    def add_durs(key: Any, found: dict[str, Any]) -> None:
        cell = durs.setdefault(key, {n: [] for n in DURATIONS})
        for name in DURATIONS:
            cell[name].extend(found.get(name) or ())

    if days:
        products = None if dim == "product" else ((rollups.EVERY, f.product) if f.product else (rollups.EVERY,))
        for row in rollups.read_rows(session, days, f.channel, dim == "channel", products, durations=durations):
            product = row["product"]
            if dim == "product" and product == rollups.EVERY:
                continue
            key = {None: ALL, "channel": row["channel"], "product": product, "day": row["day"]}[dim]
            if f.product and dim != "product":
                # NPS ignores the product filter: it comes from the every-product rows
                _add(out, key, row, rollups.NPS_FIELDS if product == rollups.EVERY else
                     [k for k in rollups.COUNT_FIELDS if k not in rollups.NPS_FIELDS])
                if durations and product != rollups.EVERY:
                    add_durs(key, row)
            else:
                _add(out, key, row, rollups.COUNT_FIELDS)
                if durations:
                    add_durs(key, row)
    for window in live:
        for key, c in raw_counts(session, window, dim).items():
            _add(out, key, c)
        if durations:
            for key, found in raw_durations(session, window, dim).items():
                add_durs(key, found)
    return {k: c for k, c in out.items() if any(c.values())}, durs


# ---------------------------------------------------------------- the KPIs, grouped


def _csat(dist: dict[int, int]) -> Csat:
    n = sum(dist.values())
    if not n:
        return Csat(0, None, None, dist)
    return Csat(n, sum(s * c for s, c in dist.items()) / n, (dist.get(4, 0) + dist.get(5, 0)) / n, dist)


def _nps(dist: dict[int, int]) -> Nps:
    n = sum(dist.values())
    pro = sum(c for s, c in dist.items() if s >= 9)
    det = sum(c for s, c in dist.items() if s <= 6)
    score = (pro - det) * 100 / n if n else None
    return Nps(n, score, pro, n - pro - det, det, dist)


def _csat_of(c: Counts) -> Csat:
    return _csat({s: c[f"csat_{s}"] for s in range(1, 6)})


def _nps_of(c: Counts) -> Nps:
    return _nps({s: c[f"nps_{s}"] for s in range(11)})


def _tiles_of(c: Counts, ho: list[float | None] | None, rq: list[float | None] | None) -> Tiles:
    p50h, p90h = ho or [None, None]
    p50r, p90r = rq or [None, None]
    return Tiles(
        csat=_csat_of(c), nps=_nps_of(c),
        helpfulness=Rate(c["helpful"], c["rated"]),
        escalation=Rate(c["escalated"], c["questions"]),
        conversations=Conversations(c["conversations"], c["conv_handoff"], c["conv_human"]),
        handoffs=Handoffs(c["handoffs"], c["handoffs_claimed"], Durations(c["handoffs_claimed"], p50h, p90h)),
        requests=Requests(c["requests"], c["requests_completed"], c["requests_open"], c["requests_sla"],
                          Durations(c["requests_completed"], p50r, p90r)),
    )


def csat_by(session: Session, f: KpiFilter, dim: Dim = None, *, use_rollups: bool = True) -> dict[Any, Csat]:
    return {k: _csat_of(c) for k, c in counts(session, f, dim, use_rollups=use_rollups).items()
            if any(c[x] for x in rollups.CSAT_FIELDS)}


def nps_by(session: Session, f: KpiFilter, dim: Dim = None, *, use_rollups: bool = True) -> dict[Any, Nps]:
    return {k: _nps_of(c) for k, c in counts(session, f, dim, use_rollups=use_rollups).items()
            if any(c[x] for x in rollups.NPS_FIELDS)}


def conversations_by(session: Session, f: KpiFilter, dim: Dim = None, *,
                     use_rollups: bool = True) -> dict[Any, Conversations]:
    return {k: Conversations(c["conversations"], c["conv_handoff"], c["conv_human"])
            for k, c in counts(session, f, dim, use_rollups=use_rollups).items() if c["conversations"]}


# ---------------------------------------------------------------- panels


def tiles(session: Session, f: KpiFilter, *, use_rollups: bool = True) -> Tiles:
    return _tiles_for(session, f, None, use_rollups).get(ALL) or _empty_tiles()


def _empty_tiles() -> Tiles:
    return _tiles_of(dict.fromkeys(rollups.COUNT_FIELDS, 0), None, None)


def _tiles_for(session: Session, f: KpiFilter, dim: Dim, use_rollups: bool) -> dict[Any, Tiles]:
    found, durs = _gather(session, f, dim, use_rollups, durations=True)
    keys = sorted(found, key=str) if dim is not None else [ALL]
    empty = dict.fromkeys(rollups.COUNT_FIELDS, 0)
    out = {}
    for k in keys:
        d = durs.get(k, {})
        out[k] = _tiles_of(found.get(k, empty), percentiles(d.get("handoff_secs", [])),
                           percentiles(d.get("request_secs", [])))
    return out


def by_channel(session: Session, f: KpiFilter, *, use_rollups: bool = True) -> dict[str, Tiles]:
    found = _tiles_for(session, f, "channel", use_rollups)
    return {ch: found.get(ch, _empty_tiles()) for ch in (CHANNELS if not f.channel else (f.channel,))}


def by_product(session: Session, f: KpiFilter, *, use_rollups: bool = True) -> dict[str, Tiles]:
    found = _tiles_for(session, f, "product", use_rollups)
    products = [p for p in found if p]
    if f.product:
        products = [f.product]
    return {p: found.get(p, _empty_tiles()) for p in sorted(products)}


def products(session: Session) -> list[str]:
    return [str(p) for p in session.scalars(select(ContentItem.product).distinct().order_by(ContentItem.product))]


TREND_NAMES = ("conversations", "containment", "escalation", "helpfulness", "csat", "nps")


def trends(session: Session, f: KpiFilter, *, use_rollups: bool = True) -> dict[str, list[DayPoint]]:
    """Per UTC day: conversations (count), containment / escalation / helpfulness (rates), CSAT mean, NPS."""
    per_day = counts(session, f, "day", use_rollups=use_rollups)
    empty = dict.fromkeys(rollups.COUNT_FIELDS, 0)
    out: dict[str, list[DayPoint]] = {name: [] for name in TREND_NAMES}
    for day in f.days:
        c = per_day.get(day, empty)
        t = _tiles_of(c, None, None)
        n_conv = t.conversations.conversations
        out["conversations"].append(DayPoint(day, float(n_conv), n_conv))
        out["containment"].append(DayPoint(day, t.conversations.containment.rate, n_conv))
        out["escalation"].append(DayPoint(day, t.escalation.rate, t.escalation.denominator))
        out["helpfulness"].append(DayPoint(day, t.helpfulness.rate, t.helpfulness.denominator))
        out["csat"].append(DayPoint(day, t.csat.mean, t.csat.n))
        out["nps"].append(DayPoint(day, t.nps.score, t.nps.n))
    return out


def unanswered_topics(session: Session, f: KpiFilter, *, limit: int = 8,
                      redact: Callable[[str], str] | None = None, use_rollups: bool = True) -> Topics:
    """Clusters of escalated / not-helpful questions (knowledge.gaps' clustering), examples redacted.

    The count covers every unanswered question in the window (from the rollup for whole days);
    the most recent ``MAX_GAP_QUESTIONS`` of them are clustered. Without a redactor, examples
    are dropped and labels hidden: free text never reaches analysts unmasked.
    """
    from knowledge.gaps import cluster_questions

    total = counts(session, f, None, use_rollups=use_rollups).get(ALL, {}).get("unanswered", 0)
    if not total:
        return Topics(0, 0, [])
    rows = _recent_unanswered(session, f)
    clusters = cluster_questions([(str(q), bool(e), bool(n)) for q, e, n, _ in rows], max_examples=3)
    topics = [Topic(label=_mask(c.label, redact) or "(hidden: no redactor)", count=c.count,
                    escalated=c.escalated, not_helpful=c.not_helpful,
                    examples=[_mask(e, redact) for e in c.examples] if redact else [])
              for c in clusters[:limit]]
    return Topics(int(total), len(rows), topics)


def _recent_unanswered(session: Session, f: KpiFilter) -> list[Any]:
    """The most recent ``MAX_GAP_QUESTIONS`` unanswered questions of the window: looked for in the
    last week first (where they nearly always are), in the whole window only if that is not enough."""
    def fetch(window: KpiFilter) -> list[Any]:
        escalated, unhelpful = _unanswered(window)
        base = (select(Answer.query, escalated.label("esc"), unhelpful.label("nh"), Answer.created_at)
                .where(Answer.created_at >= window.since, Answer.created_at < window.until,
                       or_(escalated, unhelpful)))
        if window.channel:
            base = base.join(Conversation, Conversation.id == Answer.conversation_id).where(
                Conversation.channel == window.channel)
        if window.product:
            base = base.join(ContentItem, ContentItem.id == _answer_content_id()).where(
                ContentItem.product == window.product)
        return list(session.execute(base.order_by(Answer.created_at.desc(), Answer.id.desc())
                                    .limit(MAX_GAP_QUESTIONS)).all())

    recent = f.until - timedelta(days=RECENT_GAP_DAYS)
    if recent > f.since:
        rows = fetch(KpiFilter(recent, f.until, f.channel, f.product))
        if len(rows) >= MAX_GAP_QUESTIONS:
            return rows
    return fetch(f)


def _mask(text: str, redact: Callable[[str], str] | None) -> str:
    return redact(text) if redact else ""


def themes(session: Session, f: KpiFilter, *, redact: Callable[[str], str] | None = None) -> Themes:
    """Feedback themes from the theme job (``feedback.themes.latest_themes``) when it is installed."""
    try:
        theme_job = importlib.import_module("feedback.themes")
    except ImportError:
        return Themes(False)
    latest: Callable[..., Iterable[ThemeLike]] | None = getattr(theme_job, "latest_themes", None)
    if latest is None:
        return Themes(False)
    found = []
    for t in latest(session, since=f.since, until=f.until):
        found.append(Theme(
            key=str(t.key), label=_mask(str(t.label), redact) if redact else str(t.label),
            terms=[str(x) for x in t.terms], count=int(t.count),
            trend=[(_as_day(d), int(n)) for d, n in t.trend],
            # examples come redacted from the theme job; masked again here (defence in depth),
            # and dropped when no redactor is available.
            examples=[_mask(str(e), redact) for e in t.examples] if redact else [],
            sentiment=float(t.sentiment), first_class=bool(getattr(t, "first_class", False))))
    return Themes(True, found)


# ---------------------------------------------------------------- everything, timed


PANELS: dict[str, Callable[[Session, KpiFilter], Any]] = {
    "tiles": tiles,
    "trends": trends,
    "by_channel": by_channel,
    "by_product": by_product,
    "unanswered": unanswered_topics,
    "themes": themes,
}


@dataclass
class Dashboard:
    filter: KpiFilter
    tiles: Tiles
    trends: dict[str, list[DayPoint]]
    by_channel: dict[str, Tiles]
    by_product: dict[str, Tiles]
    unanswered: Topics
    themes: Themes
    products: list[str]
    timings_ms: dict[str, float]


def dashboard(session: Session, f: KpiFilter, *, redact: Callable[[str], str] | None = None,
              unanswered: Topics | None = None) -> Dashboard:
    """Every panel; ``unanswered`` may come from a cache (it is a clustering job, not just a query)."""
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            timings[name] = round((time.perf_counter() - start) * 1000, 1)

    return Dashboard(
        filter=f,
        tiles=timed("tiles", lambda: tiles(session, f)),
        trends=timed("trends", lambda: trends(session, f)),
        by_channel=timed("by_channel", lambda: by_channel(session, f)),
        by_product=timed("by_product", lambda: by_product(session, f)),
        unanswered=unanswered if unanswered is not None else timed(
            "unanswered", lambda: unanswered_topics(session, f, redact=redact)),
        themes=timed("themes", lambda: themes(session, f, redact=redact)),
        products=products(session),
        timings_ms=timings,
    )


# ---------------------------------------------------------------- JSON


def _tiles_json(t: Tiles) -> dict[str, Any]:
    return {
        "csat": {"n": t.csat.n, "mean": t.csat.mean, "satisfied": t.csat.satisfied,
                 "distribution": {str(k): v for k, v in sorted(t.csat.distribution.items())}},
        "nps": {"n": t.nps.n, "score": t.nps.score, "promoters": t.nps.promoters, "passives": t.nps.passives,
                "detractors": t.nps.detractors, "product_scoped": t.nps.product_scoped,
                "distribution": {str(k): v for k, v in sorted(t.nps.distribution.items())}},
        "helpfulness": _rate_json(t.helpfulness, "helpful", "rated"),
        "escalation": _rate_json(t.escalation, "escalated", "questions"),
        "containment": _rate_json(t.conversations.containment, "contained", "conversations"),
        "handoff_rate": _rate_json(t.conversations.handoff_rate, "with_handoff", "conversations"),
        "time_to_human": {"handoffs": t.handoffs.handoffs, "claimed": t.handoffs.claimed,
                          **_durations_json(t.handoffs.time_to_human)},
        "service_requests": {"created": t.requests.created, "completed": t.requests.completed,
                             "open": t.requests.open, "within_sla": t.requests.within_sla,
                             "sla_rate": t.requests.sla_rate.rate,
                             **_durations_json(t.requests.time_to_resolution)},
    }


def _rate_json(r: Rate, num: str, den: str) -> dict[str, Any]:
    return {"rate": r.rate, num: r.numerator, den: r.denominator}


def _durations_json(d: Durations) -> dict[str, Any]:
    return {"median_s": d.median_s, "p90_s": d.p90_s}


def to_json(d: Dashboard) -> dict[str, Any]:
    return {
        "filter": {"since": d.filter.since.isoformat(), "until": d.filter.until.isoformat(),
                   "channel": d.filter.channel, "product": d.filter.product},
        "tiles": _tiles_json(d.tiles),
        "trends": {name: [{"day": p.day.isoformat(), "value": p.value, "n": p.n} for p in points]
                   for name, points in d.trends.items()},
        "by_channel": {k: _tiles_json(v) for k, v in d.by_channel.items()},
        "by_product": {k: _tiles_json(v) for k, v in d.by_product.items()},
        "unanswered": {"total": d.unanswered.total, "clustered": d.unanswered.clustered,
                       "topics": [asdict(t) for t in d.unanswered.topics]},
        "themes": {"available": d.themes.available,
                   "themes": [{**asdict(t), "trend": [[day.isoformat(), n] for day, n in t.trend]}
                              for t in d.themes.themes]},
        "products": d.products,
        "timings_ms": d.timings_ms,
    }
