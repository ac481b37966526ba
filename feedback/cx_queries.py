"""The CX figures' raw-table queries, shared by the dashboard (``feedback.kpis``) and the daily
rollups (``feedback.rollups``), so a rolled-up day gives the same numbers as the raw tables.

Here: the KPI window (:class:`KpiFilter`), the names of the additive counts and durations a day
is made of, the ``conversation_product`` table (the product dimension of conversations, kept up to
date by ``feedback.rollups``), the SQL helpers, and the per-metric count and duration queries
(:func:`raw_counts`, :func:`raw_durations`). It imports neither of the two modules that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Column, Date, Float, String, Table, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from api.conversations.models import Conversation
from api.db import Base
from api.handoffs.models import Handoff
from api.requests.models import RequestStatus, ServiceRequest
from api.requests.slots import product_keys
from api.safety.models import MedicalInquiry
from feedback.models import AnswerRating, SurveyKind, SurveyResponse
from knowledge.models import Answer, ContentItem, Decision

Dim = Literal["channel", "product", "day"] | None
ALL = "all"

EVERY = ""   # the channel / product value of the "every channel" / "every product" rows

CSAT_FIELDS = tuple(f"csat_{s}" for s in range(1, 6))
NPS_FIELDS = tuple(f"nps_{s}" for s in range(11))
COUNT_FIELDS: tuple[str, ...] = (
    *CSAT_FIELDS, *NPS_FIELDS,
    "rated", "helpful",
    "questions", "escalated", "unanswered",
    "conversations", "conv_handoff", "conv_human",
    "handoffs", "handoffs_claimed",
    "requests", "requests_completed", "requests_open", "requests_sla",
)

DURATION_FIELDS = ("handoff_secs", "request_secs")

conversation_product = Table(
    "conversation_product", Base.metadata,
    Column("conversation_id", String(32), primary_key=True),
    Column("product", String(64), primary_key=True, index=True),
)


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


# ---------------------------------------------------------------- SQL helpers


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def utc_day(session: Session, col: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column."""
    if _dialect(session) == "postgresql":
        return cast(func.timezone("UTC", col), Date)
    return func.date(col)


def _seconds(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    if _dialect(session) == "postgresql":
        return cast(func.extract("epoch", end - start), Float)
    # julianday is a float of days: round to milliseconds so whole seconds stay whole
    return cast(func.round((func.julianday(end) - func.julianday(start)) * 86400.0, 3), Float)


def as_day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _key(dim: Dim, value: Any) -> Any:
    if dim == "day":
        return as_day(value)
    return value if value is not None else None


def answer_content_id() -> ColumnElement[Any]:
    """The item an answer is about: the one sent, for an escalation the top candidate."""
    return func.coalesce(Answer.content_id, Answer.candidates[0]["content_id"].as_string())


def _product_pairs() -> Any:
    """(conversation_id, product) for conversations with a question about a product.

    The ``conversation_product`` table (kept by ``feedback.rollups``): one row per conversation and
    product of any question answered or escalated in it.
    """
    return conversation_product.alias("conv_product")


def request_product(col: Any = None) -> Any:
    """A service request's product as a dimension: a known product (a products.yaml key or a content
    item's product), else NULL (no product).

    Requests stored before the forms validated their slots may hold free text as the product ("3",
    a sentence); those rows are left as they are, but never shown as a product.
    """
    col = ServiceRequest.product if col is None else col
    content = select(ContentItem.product).where(ContentItem.product.is_not(None))
    known = or_(col.in_(sorted(product_keys())), col.in_(content))
    return case((known, col), else_=None)


def _grouped(stmt: Any, dim_col: Any) -> Any:
    if dim_col is None:
        return stmt.add_columns(literal(ALL).label("grp"))
    return stmt.add_columns(dim_col.label("grp")).group_by(dim_col)


# ---------------------------------------------------------------- additive counts from the raw tables
#
# Every KPI except the duration percentiles is a ratio or histogram of counts that add up over
# days, so a window = rolled-up whole days + live segments. ``raw_counts`` is the computation
# on the raw tables; ``feedback.rollups`` stores its per-day results.

Counts = dict[str, int]


def _csat_counts(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, Counts]:
    sr = SurveyResponse
    dim_col = {None: None, "channel": Conversation.channel, "product": request_product(),
               "day": utc_day(session, sr.answered_at)}[dim]
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
    dim_col = {None: None, "channel": Conversation.channel, "day": utc_day(session, sr.answered_at)}[dim]
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
               "day": utc_day(session, ar.created_at)}[dim]
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


def unanswered_clauses(f: KpiFilter) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """(escalated, rated not helpful): a question is unanswered when either holds.

    A rating comes after its answer, so only ratings from the window's start on are looked at.
    """
    rated_no = (select(AnswerRating.answer_id).where(AnswerRating.helpful.is_(False),
                                                     AnswerRating.answer_id.is_not(None),
                                                     AnswerRating.created_at >= f.since))
    return Answer.decision == Decision.escalate, Answer.id.in_(rated_no)


def _escalation_counts(session: Session, f: KpiFilter, dim: Dim) -> dict[Any, Counts]:
    dim_col = {None: None, "channel": Conversation.channel, "product": ContentItem.product,
               "day": utc_day(session, Answer.created_at)}[dim]
    escalated, unhelpful = unanswered_clauses(f)
    stmt = (select(func.coalesce(func.sum(case((escalated, 1), else_=0)), 0),
                   func.coalesce(func.sum(case((or_(escalated, unhelpful), 1), else_=0)), 0),
                   func.count())
            .where(Answer.created_at >= f.since, Answer.created_at < f.until))
    if dim == "channel" or f.channel:
        stmt = stmt.join(Conversation, Conversation.id == Answer.conversation_id)
    if dim == "product" or f.product:
        stmt = stmt.join(ContentItem, ContentItem.id == answer_content_id())
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
               "day": utc_day(session, c.created_at)}[dim]
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
               "day": utc_day(session, h.created_at)}[dim]

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
    dim_col = {None: None, "channel": r.channel, "product": request_product(r.product),
               "day": utc_day(session, r.created_at)}[dim]

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


def add_counts(out: dict[Any, Counts], key: Any, counts: dict[str, int], only: Iterable[str] | None = None) -> None:
    cell = out.setdefault(key, dict.fromkeys(COUNT_FIELDS, 0))
    for k in (only if only is not None else counts):
        cell[k] += int(counts.get(k, 0))


def raw_counts(session: Session, f: KpiFilter, dim: Dim = None,
               metrics: Iterable[str] = tuple(METRICS)) -> dict[Any, Counts]:
    """Every additive count per group, computed on the raw tables (groups with no rows left out)."""
    out: dict[Any, Counts] = {}
    for name in metrics:
        for key, counts in METRICS[name](session, f, dim).items():
            add_counts(out, key, counts)
    return out
