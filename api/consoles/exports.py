"""Exports of conversations: the per-conversation transcript (Inbox roles) and the CX CSV.

``GET /console/conversations/{id}/transcript`` — the whole conversation as a printable page (print
CSS: no console chrome, every message, page breaks between messages), for whoever may read it in
the Inbox and exactly as the Inbox shows it to them (``api.conversations.transcript``: a rep's copy
withholds medical and safety messages). ``GET /api/cx/conversations.csv`` — one row per
conversation for CX analysts (``feedback.conversation_export``): no message text, and comments only
redacted and only on request (``free_text=1``). Both are audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.consoles.cx import Period, parse_period, redactor
from api.consoles.render import render
from api.conversations import transcript
from api.db import unit_of_work
from api.errors import InvalidInput
from api.staff.auth import Staff
from api.staff.models import StaffRole
from api.staff.service import StaffIdentity
from api.state import app_state
from feedback import conversation_export as cx_export
from feedback.kpis import CHANNELS

router = APIRouter()
TranscriptReader = Annotated[StaffIdentity, Staff(StaffRole.rep, StaffRole.msl, StaffRole.medical_reviewer)]
CxAnalyst = Annotated[StaffIdentity, Staff(StaffRole.cx_analyst)]
TRANSCRIPT_ROLES = {StaffRole.rep.value, StaffRole.msl.value, StaffRole.medical_reviewer.value}


@router.get("/console/conversations/{conversation_id}/transcript", response_class=HTMLResponse)
def transcript_page(request: Request, conversation_id: str, ident: TranscriptReader) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        doc = transcript.build(session, conversation_id, ident, now=state.clock.now())
        response = render(request, "transcript.html", ident, t=doc, conv=doc.conversation)
    response.headers["cache-control"] = "no-store"
    return response


@dataclass(frozen=True)
class Selection:
    """Which conversations a CX export or drill-down covers, from its query parameters."""

    period: Period
    channel: str | None
    drill: str
    product: str | None
    theme: str | None
    theme_key: str | None

    @classmethod
    def parse(cls, now: datetime, days: str | None, since: str | None, until: str | None, channel: str | None,
              drill: str, product: str | None, theme: str | None, theme_key: str | None) -> Selection:
        if channel and channel not in CHANNELS:
            raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}")
        return cls(parse_period(now, days, since, until), channel or None, drill, product or None, theme or None,
                   theme_key or None)

    def rows(self, session: Session, *, with_comments: bool = False) -> list[cx_export.Row]:
        found = cx_export.rows(session, since=self.period.since, until=self.period.until, channel=self.channel,
                               with_comments=with_comments)
        return cx_export.drill(found, self.drill, product=self.product, theme=self.theme,
                               conversation_ids=_theme_members(session, self.period, self.theme_key))

    def audit_data(self, rows: int) -> dict[str, Any]:
        return {"since": self.period.first.isoformat(), "until": self.period.last.isoformat(),
                "channel": self.channel, "drill": self.drill, "product": self.product, "theme": self.theme,
                "theme_key": self.theme_key, "rows": rows}


@router.get("/api/cx/conversations.csv")
def conversations_csv(request: Request, ident: CxAnalyst, days: str | None = None, since: str | None = None,
                      until: str | None = None, channel: str | None = None, free_text: str = "",
                      drill: str = "all", product: str | None = None, theme: str | None = None,
                      theme_key: str | None = None) -> Response:
    state = app_state(request)
    now = state.clock.now()
    chosen = Selection.parse(now, days, since, until, channel, drill, product, theme, theme_key)
    if free_text not in ("", "0", "1"):
        raise InvalidInput("free_text is 1 (include redacted comments) or 0")
    redact = redactor()
    mode = cx_export.free_text_mode(ident.roles, free_text == "1", redact)
    with unit_of_work(state.session_factory) as session:
        found = chosen.rows(session, with_comments=mode is not None)
        body = cx_export.to_csv(found, redact=redact if mode == "redacted" else None)
        audit.record(session, action="cx.conversations_exported", subject_type="cx_dashboard", subject_id=None,
                     actor_type="staff", actor_id=ident.id, data={**chosen.audit_data(len(found)), "free_text": mode},
                     at=now)
    name = f"conversations-{chosen.period.first.isoformat()}-{chosen.period.last.isoformat()}.csv"
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"})


DRILL_PAGE_ROWS = 500


@router.get("/console/cx/conversations", response_class=HTMLResponse)
def drill_page(request: Request, ident: CxAnalyst, days: str | None = None, since: str | None = None,
               until: str | None = None, channel: str | None = None, drill: str = "all",
               product: str | None = None, theme: str | None = None, theme_key: str | None = None) -> Response:
    """The conversations behind a dashboard tile or feedback category: metadata only (no message text);
    a transcript link only for a reader whose role may open it in the Inbox."""
    state = app_state(request)
    now = state.clock.now()
    chosen = Selection.parse(now, days, since, until, channel, drill, product, theme, theme_key)
    with unit_of_work(state.session_factory) as session:
        found = chosen.rows(session)
        audit.record(session, action="cx.drill_down_viewed", subject_type="cx_dashboard", subject_id=None,
                     actor_type="staff", actor_id=ident.id, data=chosen.audit_data(len(found)), at=now)
        reads_transcripts = bool(set(ident.roles) & TRANSCRIPT_ROLES)
        shown = list(reversed(found))[:DRILL_PAGE_ROWS]   # newest first
        response = render(request, "cx_drill.html", ident, rows=shown, total=len(found), period=chosen.period,
                          title=cx_export.DRILLS[drill][0], drill=drill, channel=channel, product=product,
                          theme=theme or theme_key, outcome=cx_export.outcome, reads_transcripts=reads_transcripts,
                          csv_query=request.url.query)
    response.headers["cache-control"] = "no-store"
    return response


def _theme_members(session: Session, period: Period, theme_key: str | None) -> set[str] | None:
    """The conversations behind a feedback theme of the dashboard's run, or None (no theme asked)."""
    if not theme_key:
        return None
    from feedback.themes import theme_conversations

    found = theme_conversations(session, since=period.since, until=period.until, key=theme_key[:120])
    if found is None:
        raise InvalidInput("this theme's conversations are not recorded (a theme run before they were kept, or "
                           "no such theme in this period): run the theme job again")
    return found
