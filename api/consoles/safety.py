"""Safety console (safety role only): adverse-event and quality-complaint cases.

The queue shows day 0, the 15/90-day clock, the four minimum criteria and the status; a case
page shows the source messages verbatim, the conversation, the audit trail, and the forms to
assess and move the case. ``GET /api/staff/safety/cases/{id}/export`` downloads one case as
JSON, ``…/export/e2b`` as an ICH E2B(R3) ICSR message (``api.safety.e2b``). Possible duplicates
(``api.safety.duplicates``) are listed on the case and confirmed or rejected there. Cases are
never deleted and their legal hold is never lifted here. Every read and every
change (refusals included) is audited.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.consoles.changes import audited_change
from api.consoles.jsonbody import JsonBody, parse
from api.consoles.render import Offset, PageNo, fetch_page, page_of, render
from api.db import unit_of_work
from api.errors import ConciergeError, NotFound
from api.safety import duplicates, e2b, recall, review
from api.safety.models import AdverseEvent, AdverseEventDuplicate, AeKind, AeStatus
from api.staff.auth import Staff
from api.staff.service import StaffIdentity
from api.state import AppState, app_state

router = APIRouter()
SafetyStaff = Annotated[StaffIdentity, Staff("safety")]
T = TypeVar("T")

DONE_FLASH = {"duplicate": "Duplicate decision recorded.",
              "status": "Status updated.", "assessment": "Assessment saved.", "unchanged": "Nothing changed.",
              "taken": "The case is yours.", "released": "The case is back in the team's queue.",
              "assigned": "The case is assigned to your colleague."}
SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str
    expected: str | None = None
    reason: str | None = None


class AssignmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    take: StrictBool
    expected: str | None = None  # the assignee the staff member saw ("" or null: nobody)
    to: str | None = Field(default=None, max_length=32)  # a colleague's staff id: assign it to them


class DuplicateDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: str
    reason: str | None = None


class AssessmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seriousness: str | None = None
    criteria: dict[str, StrictBool] | None = None


def _act(state: AppState, ident: StaffIdentity, case_id: str, action: str, fn: Callable[[Session], T]) -> T:
    return audited_change(state, ident, subject_type="adverse_event", subject_id=case_id, action=action, fn=fn)


def _change_status(state: AppState, ident: StaffIdentity, case_id: str, data: StatusIn) -> AdverseEvent:
    def run(session: Session) -> AdverseEvent:
        return review.change_status(session, case_id, to=data.status, expected=data.expected, reason=data.reason,
                                    actor_id=ident.id, now=state.clock.now())

    return _act(state, ident, case_id, "status", run)


def _assign(state: AppState, ident: StaffIdentity, case_id: str, data: AssignmentIn) -> AdverseEvent:
    def run(session: Session) -> AdverseEvent:
        return review.assign_case(session, case_id, actor_id=ident.id, now=state.clock.now(), take=data.take,
                                  expected=data.expected or None, to=data.to or None)

    return _act(state, ident, case_id, "assignment", run)


def _assess(state: AppState, ident: StaffIdentity, case_id: str, data: AssessmentIn) -> list[str]:
    def run(session: Session) -> list[str]:
        return review.update_assessment(session, case_id, seriousness=data.seriousness, criteria=data.criteria,
                                        actor_id=ident.id, now=state.clock.now())

    return _act(state, ident, case_id, "assessment", run)


def _decide_duplicate(state: AppState, ident: StaffIdentity, case_id: str, link_id: str,
                      data: DuplicateDecisionIn) -> AdverseEventDuplicate:
    def run(session: Session) -> AdverseEventDuplicate:
        return duplicates.decide(session, case_id, link_id, decision=data.decision, reason=data.reason,
                                 actor_id=ident.id, now=state.clock.now())

    return _act(state, ident, case_id, "duplicate", run)


def _case_json(case: AdverseEvent, clock: review.CaseClock) -> dict[str, Any]:
    return {
        "id": case.id, "reference": case.reference, "kind": case.kind, "status": case.status,
        "seriousness": case.seriousness, "legal_hold": case.legal_hold, "channel": case.channel,
        "products": list(case.products or []), "day0_at": case.day0_at, "due_at": case.due_at,
        "clock": {**asdict(clock), "label": clock.label, "badge": clock.badge},
        "criteria": [asdict(c) for c in review.case_criteria(case)], "missing": case.missing_criteria,
        "complete": case.is_complete, "allowed_transitions": list(review.TRANSITIONS.get(case.status, ())),
        "assignee_id": case.assignee_id, "assigned_at": case.assigned_at,
    }


# ---------------------------------------------------------------- pages


@router.get("/console/safety", response_class=HTMLResponse)
def safety_home(request: Request, ident: SafetyStaff, status: str = "open", kind: str = "", assignee: str = "",
                page: PageNo = 1) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        cases, pager = page_of(
            request, lambda limit, offset: review.list_cases(session, status=status, kind=kind or None,
                                                             limit=limit, offset=offset, assignee=assignee or None,
                                                             staff_id=ident.id),
            page=page, size=review.MAX_LIST, filters={"status": status, "kind": kind, "assignee": assignee})
        review.record_case_list_view(session, cases, staff_id=ident.id,
                                     filters={"status": status or None, "kind": kind or None,
                                              "assignee": assignee or None}, now=now)
        rows = [(c, review.case_clock(c, now), review.case_criteria(c)) for c in cases]
        names = review.staff_names(session, [c.assignee_id for c in cases])
        undecided = duplicates.undecided_counts(session, {c.id for c in cases})
        return render(request, "safety.html", ident, rows=rows, status=status, kind=kind, assignee=assignee,
                      names=names, duplicate_cases=[c for c in cases if undecided.get(c.id)],
                      statuses=list(AeStatus), kinds=list(AeKind), pager=pager,
                      due_soon_days=review.DUE_SOON_DAYS)


def _case_page(request: Request, ident: StaffIdentity, case_id: str, *, status_code: int = 200,
               flash: str | None = None, flash_kind: str = "ok", reason: str = "") -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        view = review.view_case(session, case_id, staff_id=ident.id, now=state.clock.now())
        holder = view.case.assignee_id
        return render(request, "safety_case.html", ident, status_code=status_code, view=view, case=view.case,
                      assignee_name=review.staff_names(session, [holder]).get(holder) if holder else None,
                      duplicates=duplicates.list_for_case(session, view.case.id),
                      colleagues=[u for u in review.safety_colleagues(session) if u.id != holder],
                      flash=flash, flash_kind=flash_kind, reason=reason, seriousness_options=review.ASSESSED)


@router.get("/console/safety/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str, ident: SafetyStaff, done: str = "") -> Response:
    return _case_page(request, ident, case_id, flash=DONE_FLASH.get(done))


@router.post("/console/safety/{case_id}/status")
def status_form(request: Request, case_id: str, ident: SafetyStaff, status: Annotated[str, Form()] = "",
                expected: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "") -> Response:
    try:
        _change_status(app_state(request), ident, case_id,
                       StatusIn(status=status, expected=expected or None, reason=reason))
    except ConciergeError as exc:
        if isinstance(exc, NotFound):
            raise
        return _case_page(request, ident, case_id, status_code=exc.status_code, flash=exc.message,
                          flash_kind="error", reason=reason[:review.MAX_REASON * 2])
    return RedirectResponse(f"/console/safety/{case_id}?done=status", status_code=303)


@router.post("/console/safety/{case_id}/assignment")
def assignment_form(request: Request, case_id: str, ident: SafetyStaff, take: Annotated[str, Form()] = "",
                    expected: Annotated[str, Form()] = "", to: Annotated[str, Form()] = "") -> Response:
    if take not in ("0", "1"):
        return _case_page(request, ident, case_id, status_code=422, flash="say whether to take the case or release it",
                          flash_kind="error")
    try:
        _assign(app_state(request), ident, case_id,
                AssignmentIn(take=take == "1", expected=expected or None, to=to[:32] or None))
    except ConciergeError as exc:
        if isinstance(exc, NotFound):
            raise
        return _case_page(request, ident, case_id, status_code=exc.status_code, flash=exc.message,
                          flash_kind="error")
    done = "assigned" if take == "1" and to and to != ident.id else "taken" if take == "1" else "released"
    return RedirectResponse(f"/console/safety/{case_id}?done={done}",
                            status_code=303)


@router.post("/console/safety/{case_id}/duplicates/{link_id}")
def duplicate_form(request: Request, case_id: str, link_id: str, ident: SafetyStaff,
                   decision: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "") -> Response:
    try:
        _decide_duplicate(app_state(request), ident, case_id, link_id,
                          DuplicateDecisionIn(decision=decision, reason=reason))
    except ConciergeError as exc:
        if isinstance(exc, NotFound):
            raise
        return _case_page(request, ident, case_id, status_code=exc.status_code, flash=exc.message,
                          flash_kind="error")
    return RedirectResponse(f"/console/safety/{case_id}?done=duplicate", status_code=303)


@router.post("/console/safety/{case_id}/assessment")
async def assessment_form(request: Request, case_id: str, ident: SafetyStaff) -> Response:
    # Checkboxes are absent when unticked, so the criteria come from the whole form.
    form = await request.form()
    seriousness = str(form.get("seriousness") or "") or None
    criteria = {name: form.get(f"has_{name}") == "on" for name in review.CRITERIA}
    data = AssessmentIn(seriousness=seriousness, criteria=criteria)
    try:
        changed = await run_in_threadpool(_assess, app_state(request), ident, case_id, data)
    except ConciergeError as exc:
        if isinstance(exc, NotFound):
            raise
        return await run_in_threadpool(_case_page, request, ident, case_id, status_code=exc.status_code,
                                       flash=exc.message, flash_kind="error")
    done = "assessment" if changed else "unchanged"
    return RedirectResponse(f"/console/safety/{case_id}?done={done}", status_code=303)


# ---------------------------------------------------------------- JSON


@router.get("/api/staff/safety/cases")
def list_api(request: Request, ident: SafetyStaff, status: str = "open", kind: str = "", assignee: str = "",
             offset: Offset = 0) -> dict[str, Any]:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        cases, more = fetch_page(
            lambda limit, skip: review.list_cases(session, status=status, kind=kind or None, limit=limit, offset=skip,
                                                  assignee=assignee or None, staff_id=ident.id),
            offset=offset, size=review.MAX_LIST)
        review.record_case_list_view(session, cases, staff_id=ident.id,
                                     filters={"status": status or None, "kind": kind or None,
                                              "assignee": assignee or None}, now=now)
        undecided = duplicates.undecided_counts(session, {c.id for c in cases})
        return {"now": now, "cases": [{**_case_json(c, review.case_clock(c, now)),
                                       "possible_duplicates": undecided.get(c.id, 0)} for c in cases],
                "next_offset": offset + len(cases) if more else None}


@router.get("/api/staff/safety/cases/{case_id}")
def detail_api(request: Request, case_id: str, ident: SafetyStaff) -> dict[str, Any]:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        view = review.view_case(session, case_id, staff_id=ident.id, now=state.clock.now())
        return {
            **_case_json(view.case, view.clock), "raw_text": view.case.raw_text,
            "serious_terms": list(view.case.serious_terms or []), "categories": list(view.case.categories or []),
            "hcp": asdict(view.hcp), "source_messages": [asdict(s) for s in view.sources],
            "transcript": [asdict(line) for line in view.transcript], "audit_trail": [asdict(e) for e in view.trail],
            "duplicates": [d.as_dict() for d in duplicates.list_for_case(session, view.case.id)],
        }


@router.post("/api/staff/safety/cases/{case_id}/status")
def status_api(request: Request, case_id: str, ident: SafetyStaff, body: JsonBody) -> dict[str, Any]:
    state = app_state(request)
    case = _change_status(state, ident, case_id, parse(StatusIn, body))
    return _case_json(case, review.case_clock(case, state.clock.now()))


@router.post("/api/staff/safety/cases/{case_id}/assignment")
def assignment_api(request: Request, case_id: str, ident: SafetyStaff, body: JsonBody) -> dict[str, Any]:
    state = app_state(request)
    case = _assign(state, ident, case_id, parse(AssignmentIn, body))
    return _case_json(case, review.case_clock(case, state.clock.now()))


@router.post("/api/staff/safety/cases/{case_id}/assessment")
def assessment_api(request: Request, case_id: str, ident: SafetyStaff, body: JsonBody) -> dict[str, Any]:
    state = app_state(request)
    changed = _assess(state, ident, case_id, parse(AssessmentIn, body))
    with state.session_factory() as session:
        case = review.get_case(session, case_id)
        return {**_case_json(case, review.case_clock(case, state.clock.now())), "changed": changed}


@router.post("/api/staff/safety/cases/{case_id}/duplicates/{link_id}")
def duplicate_api(request: Request, case_id: str, link_id: str, ident: SafetyStaff, body: JsonBody) -> dict[str, Any]:
    state = app_state(request)
    _decide_duplicate(state, ident, case_id, link_id, parse(DuplicateDecisionIn, body))
    with state.session_factory() as session:
        return {"duplicates": [d.as_dict() for d in duplicates.list_for_case(session, case_id)]}


@router.get("/api/staff/safety/cases/{case_id}/export/e2b")
def export_e2b_api(request: Request, case_id: str, ident: SafetyStaff) -> Response:
    """The case as an ICH E2B(R3) ICSR (XML); a case that cannot be one gets a 409 naming what is missing."""
    state = app_state(request)

    def run(session: Session) -> e2b.Icsr:
        return e2b.export_case(session, case_id, staff_id=ident.id, now=state.clock.now(),
                               default_market=state.settings.default_market)

    icsr = _act(state, ident, case_id, "export", run)
    return Response(icsr.xml, media_type="application/xml",
                    headers={"content-disposition": f'attachment; filename="{SAFE_FILENAME.sub("_", icsr.filename)}"',
                             "cache-control": "no-store"})


@router.get("/api/staff/safety/cases/{case_id}/export")
def export_api(request: Request, case_id: str, ident: SafetyStaff) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        document = review.export_case(session, case_id, staff_id=ident.id, now=state.clock.now())
    name = SAFE_FILENAME.sub("_", str(document["case"]["reference"]))
    return Response(json.dumps(document, ensure_ascii=False, indent=2, default=str), media_type="application/json",
                    headers={"content-disposition": f'attachment; filename="{name}.json"',
                             "cache-control": "no-store"})


# ---------------------------------------------------------------- blinded AE review (live recall)


class ReviewLabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str


def _interval_json(interval: recall.Interval) -> dict[str, float | None]:
    return {"point": interval.point, "low": interval.low, "high": interval.high}


def _metrics_json(live: recall.LiveMetrics) -> dict[str, Any]:
    return {
        "window_days": live.window_days, "since": live.since, "flagged": live.flagged,
        "flagged_reviewed": live.flagged_reviewed, "true_positive": live.true_positive,
        "false_positive": live.false_positive, "unflagged_sampled": live.unflagged_sampled,
        "unflagged_reviewed": live.unflagged_reviewed, "false_negative": live.false_negative,
        "unflagged_volume": live.unflagged_volume, "precision": _interval_json(live.precision),
        "recall": _interval_json(live.recall), "recall_floor": live.recall_floor,
        "enough_reviews": live.enough_reviews, "alert": live.below_floor,
    }


def _live(state: AppState, session: Session) -> recall.LiveMetrics:
    return recall.check_recall_alert(session, now=state.clock.now(), floor=state.settings.ae_review_recall_floor)


def _label(state: AppState, ident: StaffIdentity, sample_id: str, verdict: str) -> recall.LiveMetrics:
    def run(session: Session) -> recall.LiveMetrics:
        recall.label(session, sample_id, verdict=verdict, reviewer_id=ident.id, now=state.clock.now())
        return _live(state, session)

    return audited_change(state, ident, subject_type="ae_review_sample", subject_id=sample_id, action="label", fn=run)


@router.get("/console/safety-review", response_class=HTMLResponse)
def review_page(request: Request, ident: SafetyStaff, done: str = "") -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        live = _live(state, session)
        items = recall.queue(session)
        return render(request, "safety_review.html", ident, live=live, items=items,
                      flash="Label saved." if done == "labelled" else None, flash_kind="ok")


@router.post("/console/safety-review/{sample_id}")
def review_form(request: Request, sample_id: str, ident: SafetyStaff,
                label: Annotated[str, Form()] = "") -> Response:
    state = app_state(request)
    try:
        _label(state, ident, sample_id, label)
    except ConciergeError as exc:
        if isinstance(exc, NotFound):
            raise
        with unit_of_work(state.session_factory) as session:
            return render(request, "safety_review.html", ident, status_code=exc.status_code,
                          live=_live(state, session), items=recall.queue(session), flash=exc.message,
                          flash_kind="error")
    return RedirectResponse("/console/safety-review?done=labelled", status_code=303)


@router.get("/api/staff/safety/review")
def review_api(request: Request, ident: SafetyStaff,
               limit: Annotated[int, Query(ge=1, le=recall.MAX_QUEUE)] = 50) -> dict[str, Any]:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        live = _live(state, session)
        return {"metrics": _metrics_json(live), "queue": [asdict(i) for i in recall.queue(session, limit=limit)]}


@router.post("/api/staff/safety/review/{sample_id}")
def review_label_api(request: Request, sample_id: str, ident: SafetyStaff, body: JsonBody) -> dict[str, Any]:
    state = app_state(request)
    live = _label(state, ident, sample_id, parse(ReviewLabelIn, body).label)
    return {"metrics": _metrics_json(live)}
