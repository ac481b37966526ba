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

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation
from api.requests.slots import product_keys
from feedback import rollups
from feedback.cx_queries import (
    ALL,
    COUNT_FIELDS,
    CSAT_FIELDS,
    DURATIONS,
    EVERY,
    NPS_FIELDS,
    Counts,
    Dim,
    add_counts,
    answer_content_id,
    as_day,
    raw_counts,
    raw_durations,
    unanswered_clauses,
)
from feedback.cx_queries import (
    KpiFilter as KpiFilter,  # re-exported: every KPI takes one
)
from knowledge.models import Answer, ContentItem

CHANNELS = ("webchat", "whatsapp")
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
    """One point of a trend: a UTC day, or an ISO week keyed by its Monday (see ``trend_bins``).

    ``n`` is what the value rests on (conversations, rated answers, responses). ``suppressed``: a
    rate or mean from fewer than ``MIN_TREND_N`` of them, not plotted (one CSAT response swings the
    mean from 1 to 5). ``partial``: the bin is not wholly inside the window (today, or a week the
    window cuts), so it is not comparable with the others.
    """
    day: date
    value: float | None
    n: int
    partial: bool = False
    suppressed: bool = False


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
    sentiment: float | None           # None: not-helpful votes, no words to score
    drillable: bool = False           # its conversations can be listed (the run kept its members)
    first_class: bool = False         # one of the themes the business acts on (wants a human, ...)


@dataclass(frozen=True)
class Themes:
    available: bool                   # False until the theme job (feedback.themes) exists
    themes: list[Theme] = field(default_factory=list)


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
        products = None if dim == "product" else ((EVERY, f.product) if f.product else (EVERY,))
        for row in rollups.read_rows(session, days, f.channel, dim == "channel", products, durations=durations):
            product = row["product"]
            if dim == "product" and product == EVERY:
                continue
            key = {None: ALL, "channel": row["channel"], "product": product, "day": row["day"]}[dim]
            if f.product and dim != "product":
                # NPS ignores the product filter: it comes from the every-product rows
                add_counts(out, key, row, NPS_FIELDS if product == EVERY else
                     [k for k in COUNT_FIELDS if k not in NPS_FIELDS])
                if durations and product != EVERY:
                    add_durs(key, row)
            else:
                add_counts(out, key, row, COUNT_FIELDS)
                if durations:
                    add_durs(key, row)
    for window in live:
        for key, c in raw_counts(session, window, dim).items():
            add_counts(out, key, c)
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
            if any(c[x] for x in CSAT_FIELDS)}


def nps_by(session: Session, f: KpiFilter, dim: Dim = None, *, use_rollups: bool = True) -> dict[Any, Nps]:
    return {k: _nps_of(c) for k, c in counts(session, f, dim, use_rollups=use_rollups).items()
            if any(c[x] for x in NPS_FIELDS)}


def conversations_by(session: Session, f: KpiFilter, dim: Dim = None, *,
                     use_rollups: bool = True) -> dict[Any, Conversations]:
    return {k: Conversations(c["conversations"], c["conv_handoff"], c["conv_human"])
            for k, c in counts(session, f, dim, use_rollups=use_rollups).items() if c["conversations"]}


# ---------------------------------------------------------------- panels


def tiles(session: Session, f: KpiFilter, *, use_rollups: bool = True) -> Tiles:
    return _tiles_for(session, f, None, use_rollups).get(ALL) or _empty_tiles()


def _empty_tiles() -> Tiles:
    return _tiles_of(dict.fromkeys(COUNT_FIELDS, 0), None, None)


def _tiles_for(session: Session, f: KpiFilter, dim: Dim, use_rollups: bool) -> dict[Any, Tiles]:
    found, durs = _gather(session, f, dim, use_rollups, durations=True)
    keys = sorted(found, key=str) if dim is not None else [ALL]
    empty = dict.fromkeys(COUNT_FIELDS, 0)
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
    # only known products: a content item's product or a products.yaml key (never free text a request
    # stored before its form validated the product, even from a day rolled up before then)
    known = set(products(session)) | product_keys()
    products_found = [p for p in found if p and p in known]
    if f.product:
        products_found = [f.product]
    return {p: found.get(p, _empty_tiles()) for p in sorted(products_found)}


def products(session: Session) -> list[str]:
    return [str(p) for p in session.scalars(select(ContentItem.product).distinct().order_by(ContentItem.product))]


TREND_NAMES = ("conversations", "containment", "escalation", "helpfulness", "csat", "nps")
# A rate or mean resting on fewer than this many conversations / ratings / responses is not plotted.
MIN_TREND_N = 5
# Windows longer than this are drawn per ISO week instead of per day.
WEEKLY_AFTER_DAYS = 35


def trend_bins(f: KpiFilter) -> tuple[str, list[tuple[date, list[date], bool]]]:
    """("day" | "week", [(bin start, the window's days in it, partial)]).

    A bin is partial when part of it lies outside the window: the current day of a window that
    ends now, or a week cut by the window's start or end.
    """
    days = f.days
    since, until = f.since.astimezone(UTC), f.until.astimezone(UTC)

    def partial(first: date, length: int) -> bool:
        start = datetime.combine(first, datetime.min.time(), UTC)
        return start < since or start + timedelta(days=length) > until

    if len(days) <= WEEKLY_AFTER_DAYS:
        return "day", [(d, [d], partial(d, 1)) for d in days]
    weeks: dict[date, list[date]] = {}
    for d in days:
        weeks.setdefault(d - timedelta(days=d.weekday()), []).append(d)
    return "week", [(monday, members, partial(monday, 7)) for monday, members in sorted(weeks.items())]


def trends(session: Session, f: KpiFilter, *, use_rollups: bool = True) -> dict[str, list[DayPoint]]:
    """Per bin (``trend_bins``): conversations (count), containment / escalation / helpfulness
    (rates), CSAT mean, NPS. Counts are summed over the bin's days before a rate is taken."""
    per_day = counts(session, f, "day", use_rollups=use_rollups)
    out: dict[str, list[DayPoint]] = {name: [] for name in TREND_NAMES}
    for start, members, partial in trend_bins(f)[1]:
        c = dict.fromkeys(COUNT_FIELDS, 0)
        for day in members:
            for k, v in per_day.get(day, {}).items():
                c[k] = c.get(k, 0) + v
        t = _tiles_of(c, None, None)
        n_conv = t.conversations.conversations

        def point(value: float | None, n: int, *, count: bool = False, start: date = start,
                  partial: bool = partial) -> DayPoint:
            return DayPoint(start, value, n, partial=partial,
                            suppressed=not count and value is not None and n < MIN_TREND_N)

        out["conversations"].append(point(float(n_conv), n_conv, count=True))
        out["containment"].append(point(t.conversations.containment.rate, n_conv))
        out["escalation"].append(point(t.escalation.rate, t.escalation.denominator))
        out["helpfulness"].append(point(t.helpfulness.rate, t.helpfulness.denominator))
        out["csat"].append(point(t.csat.mean, t.csat.n))
        out["nps"].append(point(t.nps.score, t.nps.n))
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
        escalated, unhelpful = unanswered_clauses(window)
        base = (select(Answer.query, escalated.label("esc"), unhelpful.label("nh"), Answer.created_at)
                .where(Answer.created_at >= window.since, Answer.created_at < window.until,
                       or_(escalated, unhelpful)))
        if window.channel:
            base = base.join(Conversation, Conversation.id == Answer.conversation_id).where(
                Conversation.channel == window.channel)
        if window.product:
            base = base.join(ContentItem, ContentItem.id == answer_content_id()).where(
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
    """Feedback themes from the theme job (``feedback.themes.latest_themes``)."""
    from feedback.themes import latest_themes  # the theme job's numpy/embedder stack, only when asked

    found = []
    for t in latest_themes(session, since=f.since, until=f.until):
        found.append(Theme(
            key=str(t.key), label=_mask(str(t.label), redact) if redact else str(t.label),
            terms=[str(x) for x in t.terms], count=int(t.count),
            trend=[(as_day(d), int(n)) for d, n in t.trend],
            # examples come redacted from the theme job; masked again here (defence in depth),
            # and dropped when no redactor is available.
            examples=[_mask(str(e), redact) for e in t.examples] if redact else [],
            sentiment=None if t.sentiment is None else float(t.sentiment), drillable=bool(t.drillable),
            first_class=bool(getattr(t, "first_class", False))))
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
        "trend_bin": trend_bins(d.filter)[0],
        "trends": {name: [{"day": p.day.isoformat(), "value": p.value, "n": p.n, "partial": p.partial,
                           "suppressed": p.suppressed} for p in points]
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
