"""Service-request console (reps, MSLs, medical reviewers): the requests HCPs made through the bot.

Pages under /console/requests work with plain forms; the same actions are JSON endpoints under
/api/staff/requests. Who sees which request is ``api.requests.desk`` (role, kind, territory).
Every action, refusals included, is audited; the message that tells the HCP a request is closed
(and asks CSAT) is delivered once its transaction has committed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from api.consoles.changes import audited_change
from api.consoles.jsonbody import JsonBody, parse
from api.consoles.render import Offset, PageNo, fetch_page, page_of, render
from api.db import unit_of_work
from api.errors import ConciergeError, Forbidden, NotFound
from api.pipeline.delivery import deliver_after_commit
from api.requests import desk
from api.requests.models import RequestKind, ServiceRequest
from api.requests.service import LABEL
from api.requests.slots import product_keys
from api.staff.auth import Staff
from api.staff.service import StaffIdentity
from api.state import AppState, app_state

router = APIRouter()
ROLES = ("rep", "msl", "medical_reviewer")
Worker = Annotated[StaffIdentity, Staff(*ROLES)]
T = TypeVar("T")

DONE_FLASH = {"note": "Note added.", "in_progress": "Marked in progress.",
              "resolved": "Resolved: the HCP has been told and asked to rate it.",
              "cannot_fulfil": "Closed as cannot fulfil: the HCP has been told why and asked to rate it."}


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str
    reason: str | None = None
    expected_status: str | None = None


def _act(state: AppState, ident: StaffIdentity, request_id: str, action: str, fn: Callable[[Session], T]) -> T:
    return audited_change(state, ident, subject_type="service_request", subject_id=request_id, action=action, fn=fn)


def _note(state: AppState, ident: StaffIdentity, request_id: str, text: str) -> str:
    def run(session: Session) -> str:
        return desk.add_note(session, request_id, ident, text=text, now=state.clock.now()).id

    return _act(state, ident, request_id, "note", run)


def _status(state: AppState, ident: StaffIdentity, request_id: str, *, status: str, reason: str | None,
            expected_status: str | None) -> desk.StatusOutcome:
    def run(session: Session) -> desk.StatusOutcome:
        return desk.change_status(session, request_id, ident, status=status, reason=reason,
                                  expected_status=expected_status, now=state.clock.now())

    outcome = _act(state, ident, request_id, "status_change", run)
    if outcome.message is not None:
        deliver_after_commit(state, outcome.request.conversation_id)
    return outcome


def _summary(entry: desk.RequestEntry) -> dict[str, Any]:
    r, hcp = entry.request, entry.hcp
    return {
        "id": r.id, "reference": r.reference, "kind": r.kind, "label": LABEL[RequestKind(r.kind)], "team": r.team,
        # a product only when it is one of ours: requests stored before the forms validated the product
        # may hold free text there (left as stored, shown under the request's details, never as a product)
        "status": r.status, "channel": r.channel, "product": r.product if r.product in product_keys() else None,
        "created_at": r.created_at,
        "sla_due_at": r.sla_due_at, "due": entry.due, "overdue": entry.overdue, "completed_at": r.completed_at,
        "hcp": None if hcp is None else {"id": hcp.id, "name": hcp.name, "country": hcp.country,
                                         "territory": hcp.territory, "verification": hcp.verification_status},
    }


def _detail(view: desk.RequestView) -> dict[str, Any]:
    r = view.request
    return {
        **_summary(desk.RequestEntry(r, view.hcp, view.due)),
        "details": dict(r.details or {}), "outcome_reason": r.outcome_reason, "closed_by": r.closed_by,
        "closed_by_name": view.closed_by_name, "allowed": [str(s) for s in view.allowed],
        "notes": [{"at": n.at, "staff": n.staff, "text": n.text} for n in view.notes],
        "trail": [{"at": t.at, "action": t.action, "actor": t.actor, "data": t.data} for t in view.trail],
        "csat_asked": view.csat_asked, "csat": view.csat, "whatsapp_window_open": view.whatsapp_window_open,
    }


def _outcome(outcome: desk.StatusOutcome) -> dict[str, Any]:
    r: ServiceRequest = outcome.request
    return {"id": r.id, "reference": r.reference, "status": r.status, "completed_at": r.completed_at,
            "closed_by": r.closed_by, "outcome_reason": r.outcome_reason,
            "message_id": outcome.message.id if outcome.message else None,
            "whatsapp_template": outcome.whatsapp_template, "survey_id": outcome.survey_id}


# ---------------------------------------------------------------- pages


@router.get("/console/requests", response_class=HTMLResponse)
def requests_home(request: Request, ident: Worker, status: str = "", kind: str = "", page: PageNo = 1) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        entries, pager = page_of(
            request, lambda limit, offset: desk.list_requests(session, ident, now=now, status=status, kind=kind,
                                                              limit=limit, offset=offset),
            page=page, size=desk.MAX_LIST, filters={"status": status, "kind": kind})
        return render(request, "requests.html", ident, entries=entries, status=status, kind=kind,
                      kinds=list(RequestKind), label=LABEL, status_words=desk.STATUS_WORDS,
                      status_filters=[s for s in desk.STATUS_FILTERS if s], pager=pager,
                      medical=desk.sees_medical_requests(ident))


def _request_page(request: Request, ident: StaffIdentity, request_id: str, *, status_code: int = 200,
                  flash: str | None = None, flash_kind: str = "ok", note: str = "", reason: str = "") -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        view = desk.view_request(session, request_id, ident, now=state.clock.now())
        return render(request, "request_detail.html", ident, status_code=status_code, view=view, r=view.request,
                      label=LABEL[RequestKind(view.request.kind)], status_words=desk.STATUS_WORDS, flash=flash,
                      flash_kind=flash_kind, note=note, reason=reason, max_note=desk.MAX_NOTE,
                      max_reason=desk.MAX_REASON)


@router.get("/console/requests/{request_id}", response_class=HTMLResponse)
def request_page(request: Request, request_id: str, ident: Worker, done: str = "") -> Response:
    return _request_page(request, ident, request_id, flash=DONE_FLASH.get(done))


@router.post("/console/requests/{request_id}/note")
def note_form(request: Request, request_id: str, ident: Worker, text: Annotated[str, Form()] = "") -> Response:
    try:
        _note(app_state(request), ident, request_id, text)
    except ConciergeError as exc:
        if isinstance(exc, NotFound | Forbidden):
            raise
        return _request_page(request, ident, request_id, status_code=exc.status_code, flash=exc.message,
                             flash_kind="error", note=text[:desk.MAX_NOTE * 2])
    return RedirectResponse(f"/console/requests/{request_id}?done=note", status_code=303)


@router.post("/console/requests/{request_id}/status")
def status_form(request: Request, request_id: str, ident: Worker, status: Annotated[str, Form()] = "",
                reason: Annotated[str, Form()] = "", expected_status: Annotated[str, Form()] = "") -> Response:
    try:
        outcome = _status(app_state(request), ident, request_id, status=status, reason=reason,
                          expected_status=expected_status or None)
    except ConciergeError as exc:
        if isinstance(exc, NotFound | Forbidden):
            raise
        return _request_page(request, ident, request_id, status_code=exc.status_code, flash=exc.message,
                             flash_kind="error", reason=reason[:desk.MAX_REASON * 2])
    return RedirectResponse(f"/console/requests/{request_id}?done={outcome.request.status}", status_code=303)


# ---------------------------------------------------------------- JSON


@router.get("/api/staff/requests")
def list_api(request: Request, ident: Worker, status: str = "", kind: str = "", offset: Offset = 0) -> dict[str, Any]:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        entries, more = fetch_page(
            lambda limit, skip: desk.list_requests(session, ident, now=now, status=status, kind=kind,
                                                   limit=limit, offset=skip),
            offset=offset, size=desk.MAX_LIST)
        return {"requests": [_summary(e) for e in entries], "next_offset": offset + len(entries) if more else None}


@router.get("/api/staff/requests/{request_id}")
def detail_api(request: Request, request_id: str, ident: Worker) -> dict[str, Any]:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        return _detail(desk.view_request(session, request_id, ident, now=state.clock.now()))


@router.post("/api/staff/requests/{request_id}/notes")
def note_api(request: Request, request_id: str, ident: Worker, body: JsonBody) -> dict[str, Any]:
    data = parse(NoteIn, body)
    return {"id": _note(app_state(request), ident, request_id, data.text), "service_request_id": request_id}


@router.post("/api/staff/requests/{request_id}/status")
def status_api(request: Request, request_id: str, ident: Worker, body: JsonBody) -> dict[str, Any]:
    data = parse(StatusIn, body)
    return _outcome(_status(app_state(request), ident, request_id, status=data.status, reason=data.reason,
                            expected_status=data.expected_status))
