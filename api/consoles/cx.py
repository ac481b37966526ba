"""The CX dashboard (cx_analyst only): KPIs with time, channel and product filters, SVG charts.

``/console/cx`` renders the page; ``/api/cx/kpis`` returns the same data as JSON. No personal
data: HCP names and numbers are never read, and free text (unanswered questions, theme
examples) is shown only after ``feedback.redact.redact``; without it, no free text is shown at all.
Each view is audited (the filter only: no personal data in audit rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from api.audit import service as audit
from api.consoles import cx_charts as charts
from api.consoles.render import render
from api.db import unit_of_work
from api.errors import InvalidInput
from api.staff.auth import Staff
from api.staff.service import StaffIdentity
from api.state import app_state
from feedback import kpis
from feedback.conversation_export import DRILLS
from feedback.redact import redact

router = APIRouter()
CxAnalyst = Annotated[StaffIdentity, Staff("cx_analyst")]

PERIODS = (7, 30, 90)
MAX_CUSTOM_DAYS = 366
# Top unanswered topics cluster questions (seconds at scale): kept per filter for a few minutes.
TOPICS_TTL_S = 300.0
TOPICS_CACHE_SIZE = 64
FIRST_CLASS_THEMES = ("wants a human", "too many messages", "content out of date", "access problem")


def redactor() -> Callable[[str], str] | None:
    """What free text goes through before a CX analyst sees it (None would mean: show none)."""
    return redact


@dataclass(frozen=True)
class Period:
    days: int | None        # 7/30/90, or None for a custom range
    first: date
    last: date              # inclusive

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, time.min, UTC)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time.min, UTC)


def parse_period(now: datetime, days: str | None, since: str | None, until: str | None) -> Period:
    """A preset (``days`` 7/30/90, ending today) or ``days=custom`` / no days with ``since``..``until``."""
    today = now.astimezone(UTC).date()
    if days == "custom" or (not days and (since or until)):
        try:
            first = date.fromisoformat(since) if since else None
            last = date.fromisoformat(until) if until else today
        except ValueError:
            raise InvalidInput("dates must look like 2026-11-23") from None
        if first is None:
            raise InvalidInput("a custom period needs a start date")
        if first > last:
            raise InvalidInput("the period starts after it ends")
        if (last - first).days + 1 > MAX_CUSTOM_DAYS:
            raise InvalidInput(f"a custom period is at most {MAX_CUSTOM_DAYS} days")
        return Period(None, first, last)
    try:
        n = int(days) if days else 30
    except ValueError:
        raise InvalidInput(f"period must be one of {', '.join(map(str, PERIODS))} days") from None
    if n not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(map(str, PERIODS))} days")
    return Period(n, today - timedelta(days=n - 1), today)


def _load(request: Request, ident: StaffIdentity, days: str | None, since: str | None, until: str | None,
          channel: str | None, product: str | None, view: str) -> tuple[Period, kpis.Dashboard]:
    state = app_state(request)
    now = state.clock.now()
    period = parse_period(now, days, since, until)
    channel = channel or None
    product = product or None
    if channel is not None and channel not in kpis.CHANNELS:
        raise InvalidInput(f"channel must be one of {', '.join(kpis.CHANNELS)}")
    f = kpis.KpiFilter(period.since, period.until, channel, product)
    cache = state.cx_topics_cache
    cached = cache.get(f)
    fresh = cached[1] if cached and cached[0] > monotonic() else None
    with unit_of_work(state.session_factory) as session:
        if product is not None and product not in kpis.products(session):
            raise InvalidInput("unknown product")
        board = kpis.dashboard(session, f, redact=redactor(), unanswered=fresh)
    if fresh is None:
        if len(cache) > TOPICS_CACHE_SIZE:
            cache.clear()
        cache[f] = (monotonic() + TOPICS_TTL_S, board.unanswered)
    with unit_of_work(state.session_factory) as session:
        audit.record(session, action="cx.dashboard_viewed", subject_type="cx_dashboard", subject_id=None,
                     actor_type="staff", actor_id=ident.id,
                     data={"view": view, "since": period.first.isoformat(), "until": period.last.isoformat(),
                           "channel": channel, "product": product}, at=now)
    return period, board


@router.get("/api/cx/kpis")
def kpis_json(request: Request, ident: CxAnalyst, days: str | None = None, since: str | None = None,
              until: str | None = None, channel: str | None = None, product: str | None = None) -> JSONResponse:
    period, board = _load(request, ident, days, since, until, channel, product, "json")
    body = kpis.to_json(board)
    body["period"] = {"days": period.days, "first": period.first.isoformat(), "last": period.last.isoformat()}
    body["redaction"] = redactor() is not None
    return JSONResponse(body)


@router.get("/console/cx", response_class=HTMLResponse)
def cx_page(request: Request, ident: CxAnalyst, days: str | None = None, since: str | None = None,
            until: str | None = None, channel: str | None = None, product: str | None = None) -> Response:
    period, board = _load(request, ident, days, since, until, channel, product, "page")
    return render(request, "cx.html", ident, period=period, periods=PERIODS, board=board,
                  f=board.filter, tiles=tile_views(board.tiles), trend_charts=trend_charts(board),
                  dist_charts=distribution_charts(board.tiles),
                  channel_rows=breakdown_rows(board.by_channel), product_rows=breakdown_rows(board.by_product),
                  topics=board.unanswered, themes=board.themes, redaction=redactor() is not None,
                  first_class=FIRST_CLASS_THEMES, channels=kpis.CHANNELS, weekly=weekly, drills=TILE_DRILLS,
                  theme_drills=THEME_DRILLS,
                  drill_titles={k: v[0] for k, v in DRILLS.items()})


# Not-helpful-reason themes → the conversations with such a rating (the export's theme labels). Comment
# clusters have no link: a theme run does not keep which comments formed it.
THEME_DRILLS = {"answer_not_relevant": "drill=not_helpful&theme=answer+not+relevant",
                "answer_incomplete": "drill=not_helpful&theme=answer+incomplete",
                "answer_unclear": "drill=not_helpful&theme=answer+unclear",
                "answer_not_helpful_other": "drill=not_helpful&theme=answer+other",
                "answer_not_helpful": "drill=not_helpful"}


# Which conversations stand behind a tile (feedback.conversation_export.DRILLS)
TILE_DRILLS = {"csat": "dissatisfied", "nps": "detractor", "helpfulness": "not_helpful", "containment": "contained",
               "handoff_rate": "handoff", "time_to_human": "unclaimed", "escalation": "medical"}


def weekly(trend: list[tuple[date, int]]) -> list[tuple[date, int]]:
    """A daily count series summed per ISO week (keyed by its Monday), for long periods."""
    weeks: dict[date, int] = {}
    for day, n in trend:
        monday = day - timedelta(days=day.weekday())
        weeks[monday] = weeks.get(monday, 0) + n
    return sorted(weeks.items())


# ---------------------------------------------------------------- view models


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def fmt_rate(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.0f}%"


@dataclass(frozen=True)
class TileView:
    key: str
    label: str
    value: str
    detail: str


def tile_views(t: kpis.Tiles) -> list[TileView]:
    nps = t.nps
    req = t.requests
    ho = t.handoffs
    return [
        TileView("csat", "CSAT", "–" if t.csat.mean is None else f"{t.csat.mean:.2f} / 5",
                 f"{fmt_rate(t.csat.satisfied)} satisfied (4–5) · n = {t.csat.n}"),
        TileView("nps", "NPS", "–" if nps.score is None else f"{nps.score:+.0f}",
                 f"{nps.promoters} promoters, {nps.detractors} detractors · n = {nps.n}"),
        TileView("helpfulness", "Answer helpfulness", fmt_rate(t.helpfulness.rate),
                 f"{t.helpfulness.numerator} of {t.helpfulness.denominator} rated answers helpful"),
        TileView("containment", "Containment", fmt_rate(t.conversations.containment.rate),
                 f"{t.conversations.containment.numerator} of {t.conversations.conversations} conversations "
                 "without a human"),
        TileView("handoff_rate", "Handoff rate", fmt_rate(t.conversations.handoff_rate.rate),
                 f"{t.conversations.with_handoff} conversations handed to a person"),
        TileView("time_to_human", "Time to human", fmt_duration(ho.time_to_human.median_s),
                 f"median · p90 {fmt_duration(ho.time_to_human.p90_s)} · {ho.claimed} of {ho.handoffs} claimed"),
        TileView("time_to_resolution", "Service requests resolved in", fmt_duration(req.time_to_resolution.median_s),
                 f"median · p90 {fmt_duration(req.time_to_resolution.p90_s)} · {fmt_rate(req.sla_rate.rate)} in SLA"
                 f" · {req.open} open of {req.created}"),
        TileView("escalation", "Escalation rate", fmt_rate(t.escalation.rate),
                 f"{t.escalation.numerator} of {t.escalation.denominator} questions escalated"),
    ]


def trend_charts(board: kpis.Dashboard) -> list[charts.LineChart]:
    tr = board.trends
    per = kpis.trend_bins(board.filter)[0]
    every = "per week" if per == "week" else "per day"

    def line(chart_id: str, title: str, name: str, **kw: Any) -> charts.LineChart:
        return charts.line_chart(chart_id, title, tr[name], per=per, **kw)

    return [
        line("trend-conversations", f"Conversations {every}", "conversations", count=True),
        line("trend-containment", f"Containment {every}", "containment", fmt=charts.pct, y_max=1.0),
        line("trend-escalation", f"Escalation rate {every}", "escalation", fmt=charts.pct, y_max=1.0),
        line("trend-helpfulness", f"Answer helpfulness {every}", "helpfulness", fmt=charts.pct, y_max=1.0),
        line("trend-csat", f"CSAT (mean) {every}", "csat", fmt=charts.one_dp, y_min=1.0, y_max=5.0),
        line("trend-nps", f"NPS {every}", "nps", y_min=-100.0, y_max=100.0),
    ]


def distribution_charts(t: kpis.Tiles) -> list[charts.BarChart]:
    csat = [(str(s), float(c)) for s, c in sorted(t.csat.distribution.items())]
    nps = [(str(s), float(c)) for s, c in sorted(t.nps.distribution.items())]
    nps_tones = ["bad" if s <= 6 else "warn" if s <= 8 else "ok" for s in sorted(t.nps.distribution)]
    return [
        charts.bar_chart("dist-csat", "CSAT scores (1–5), responses", csat,
                         tones=["bad", "bad", "warn", "ok", "ok"]),
        charts.bar_chart("dist-nps", "NPS scores (0–10), responses", nps, tones=nps_tones),
    ]


@dataclass(frozen=True)
class BreakdownRow:
    key: str
    conversations: int
    containment: str
    handoff_rate: str
    time_to_human: str
    escalation: str
    helpfulness: str
    csat: str
    nps: str
    requests: str


def breakdown_rows(found: dict[str, kpis.Tiles]) -> list[BreakdownRow]:
    rows = []
    for key, t in found.items():
        rows.append(BreakdownRow(
            key=key, conversations=t.conversations.conversations,
            containment=fmt_rate(t.conversations.containment.rate),
            handoff_rate=fmt_rate(t.conversations.handoff_rate.rate),
            time_to_human=fmt_duration(t.handoffs.time_to_human.median_s),
            escalation=fmt_rate(t.escalation.rate), helpfulness=fmt_rate(t.helpfulness.rate),
            csat="–" if t.csat.mean is None else f"{t.csat.mean:.2f} (n {t.csat.n})",
            nps="–" if t.nps.score is None else f"{t.nps.score:+.0f} (n {t.nps.n})",
            requests=f"{fmt_duration(t.requests.time_to_resolution.median_s)} (n {t.requests.completed})"))
    return rows

