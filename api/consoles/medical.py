"""Medical review console (medical_reviewer only): medical inquiries, answered or closed.

Pages under /console/medical work with plain forms; the same actions are JSON endpoints under
/api/staff/medical. Every read of an inquiry's content and every action (refusals included) is
audited; an answer reaches the HCP on their channel once its transaction has committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.consoles.changes import audited_change
from api.consoles.jsonbody import JsonBody, parse
from api.consoles.render import Offset, PageNo, fetch_page, page_of, render
from api.conversations.models import Conversation
from api.conversations.outbound import MAX_STAFF_TEXT
from api.db import unit_of_work
from api.errors import ConciergeError, InvalidInput, NotFound
from api.handoffs import screening
from api.handoffs.errors import ReplyBlocked
from api.pipeline.delivery import deliver_after_commit
from api.safety import review
from api.safety.models import InquiryStatus, MedicalInquiry
from api.staff.auth import Staff
from api.staff.service import StaffIdentity
from api.state import AppState, app_state

router = APIRouter()
Reviewer = Annotated[StaffIdentity, Staff("medical_reviewer")]
T = TypeVar("T")

DONE_FLASH = {"answered": "Answer sent to the HCP.", "closed": "Inquiry closed."}


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    content_id: str | None = None
    version: int | None = Field(default=None, ge=1)
    # Send past an overridable finding of the staff reply screen (recorded).
    override_reason: str | None = Field(default=None, max_length=2000)


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = None
    expected_status: str | None = None


def _act(state: AppState, ident: StaffIdentity, inquiry_id: str, action: str, fn: Callable[[Session], T]) -> T:
    return audited_change(state, ident, subject_type="medical_inquiry", subject_id=inquiry_id, action=action, fn=fn)


def _screen_answer(state: AppState, ident: StaffIdentity, inquiry_id: str, text: str,
                   override_reason: str | None) -> None:
    """A reviewer's own words pass the staff reply screen first (api.handoffs.screening): its
    decision, audit and any AE case commit on their own, then a refusal is raised."""
    screener = screening.screener_for(state.settings)
    with unit_of_work(state.session_factory) as session:
        inquiry = review.get_inquiry(session, inquiry_id)
        conv = session.get(Conversation, inquiry.conversation_id)
        assert conv is not None
        outcome = screening.screen_answer(session, conv, ident, state.clock.now(), text=text, screener=screener,
                                          override_reason=override_reason, subject_type="medical_inquiry",
                                          subject_id=inquiry.id, reference=inquiry.reference)
    if outcome.refused is not None:
        raise outcome.refused


def _answer(state: AppState, ident: StaffIdentity, inquiry_id: str, *, text: str | None,
            content_id: str | None, version: int | None, override_reason: str | None = None) -> review.AnswerOutcome:
    if text and 0 < len(text.strip()) <= MAX_STAFF_TEXT and content_id is None:
        _screen_answer(state, ident, inquiry_id, text, override_reason)

    def run(session: Session) -> review.AnswerOutcome:
        return review.answer_inquiry(session, inquiry_id, reviewer_id=ident.id, text=text, content_id=content_id,
                                     version=version, now=state.clock.now(),
                                     default_market=state.settings.default_market)

    outcome = _act(state, ident, inquiry_id, "answer", run)
    deliver_after_commit(state, outcome.conversation_id)
    return outcome


def _close(state: AppState, ident: StaffIdentity, inquiry_id: str, *, reason: str | None,
           expected_status: str | None) -> MedicalInquiry:
    def run(session: Session) -> MedicalInquiry:
        return review.close_inquiry(session, inquiry_id, reviewer_id=ident.id, reason=reason,
                                    expected_status=expected_status, now=state.clock.now())

    return _act(state, ident, inquiry_id, "close", run)


def _summary(inquiry: MedicalInquiry, card: review.HcpCard) -> dict[str, Any]:
    return {
        "id": inquiry.id, "reference": inquiry.reference, "status": inquiry.status, "text": inquiry.text,
        "product": inquiry.product, "market": inquiry.market, "channel": inquiry.channel,
        "reasons": list(inquiry.reasons or []),
        "reason_labels": [review.reason_label(r) for r in inquiry.reasons or []],
        "created_at": inquiry.created_at, "answered_at": inquiry.answered_at, "closed_at": inquiry.closed_at,
        "hcp": asdict(card),
    }


# ---------------------------------------------------------------- pages


@router.get("/console/medical", response_class=HTMLResponse)
def medical_home(request: Request, ident: Reviewer, status: str = "", product: str = "", page: PageNo = 1) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        inquiries, pager = page_of(
            request, lambda limit, offset: review.list_inquiries(session, status=status, product=product or None,
                                                                 limit=limit, offset=offset),
            page=page, size=review.MAX_LIST, filters={"status": status, "product": product})
        cards = review.inquiry_cards(session, inquiries)
        review.record_inquiry_list_view(session, inquiries, staff_id=ident.id,
                                        filters={"status": status or None, "product": product or None},
                                        now=state.clock.now())
        return render(request, "medical.html", ident, inquiries=inquiries, cards=cards, status=status,
                      product=product, products=review.inquiry_products(session), statuses=list(InquiryStatus),
                      reason_label=review.reason_label, pager=pager)


def _inquiry_page(request: Request, ident: StaffIdentity, inquiry_id: str, *, status_code: int = 200,
                  flash: str | None = None, flash_kind: str = "ok", draft: str = "", reason: str = "",
                  override_reason: str = "") -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        view = review.view_inquiry(session, inquiry_id, staff_id=ident.id, now=now)
        options = (review.content_options(session, view.inquiry, default_market=state.settings.default_market,
                                          now=now) if view.inquiry.status == InquiryStatus.open else [])
        return render(request, "medical_inquiry.html", ident, status_code=status_code, view=view,
                      inquiry=view.inquiry, options=options, flash=flash, flash_kind=flash_kind, draft=draft,
                      reason=reason, override_reason=override_reason, max_text=MAX_STAFF_TEXT)


@router.get("/console/medical/{inquiry_id}", response_class=HTMLResponse)
def inquiry_page(request: Request, inquiry_id: str, ident: Reviewer, done: str = "") -> Response:
    return _inquiry_page(request, ident, inquiry_id, flash=DONE_FLASH.get(done))


def _content_choice(value: str) -> tuple[str, int]:
    content_id, _, version = value.strip().rpartition("@")
    if not content_id or not version.isdigit():
        raise InvalidInput("choose an approved content item from the list")
    return content_id, int(version)


@router.post("/console/medical/{inquiry_id}/answer")
def answer_form(request: Request, inquiry_id: str, ident: Reviewer, text: Annotated[str, Form()] = "",
                content: Annotated[str, Form()] = "", override_reason: Annotated[str, Form()] = "") -> Response:
    state = app_state(request)
    try:
        if content.strip():
            content_id, version = _content_choice(content)
            _answer(state, ident, inquiry_id, text=text or None, content_id=content_id, version=version)
        else:
            _answer(state, ident, inquiry_id, text=text, content_id=None, version=None,
                    override_reason=override_reason or None)
    except ConciergeError as exc:
        if isinstance(exc, NotFound):
            raise
        flash = exc.message
        if isinstance(exc, ReplyBlocked) and isinstance(exc.detail, dict):
            flash += " " + " ".join(f"{f['label']}: {f['detail']}." for f in exc.detail["findings"])
        return _inquiry_page(request, ident, inquiry_id, status_code=exc.status_code, flash=flash,
                             flash_kind="error", draft=text[:MAX_STAFF_TEXT * 2],
                             override_reason=override_reason[:500])
    return RedirectResponse(f"/console/medical/{inquiry_id}?done=answered", status_code=303)


@router.post("/console/medical/{inquiry_id}/close")
def close_form(request: Request, inquiry_id: str, ident: Reviewer, reason: Annotated[str, Form()] = "",
               expected_status: Annotated[str, Form()] = "") -> Response:
    state = app_state(request)
    try:
        _close(state, ident, inquiry_id, reason=reason, expected_status=expected_status or None)
    except ConciergeError as exc:
        if isinstance(exc, NotFound):
            raise
        return _inquiry_page(request, ident, inquiry_id, status_code=exc.status_code, flash=exc.message,
                             flash_kind="error", reason=reason[:review.MAX_REASON * 2])
    return RedirectResponse(f"/console/medical/{inquiry_id}?done=closed", status_code=303)


# ---------------------------------------------------------------- JSON


@router.get("/api/staff/medical/inquiries")
def list_api(request: Request, ident: Reviewer, status: str = "", product: str = "",
             offset: Offset = 0) -> dict[str, Any]:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        inquiries, more = fetch_page(
            lambda limit, skip: review.list_inquiries(session, status=status, product=product or None,
                                                      limit=limit, offset=skip),
            offset=offset, size=review.MAX_LIST)
        cards = review.inquiry_cards(session, inquiries)
        review.record_inquiry_list_view(session, inquiries, staff_id=ident.id,
                                        filters={"status": status or None, "product": product or None},
                                        now=state.clock.now())
        return {"inquiries": [_summary(i, cards[i.id]) for i in inquiries],
                "next_offset": offset + len(inquiries) if more else None}


def _detail(view: review.InquiryView) -> dict[str, Any]:
    inquiry = view.inquiry
    msg = view.response_message
    return {
        **_summary(inquiry, view.hcp),
        "reviewer_id": inquiry.reviewer_id, "reviewer_name": view.reviewer_name, "response": inquiry.response,
        "response_message": None if msg is None else {
            "id": msg.id, "status": msg.status, "content_id": msg.content_id, "content_version": msg.content_version,
            "approval_code": msg.approval_code},
        "closed_by": inquiry.closed_by, "closed_by_name": view.closed_by_name, "close_reason": inquiry.close_reason,
        "whatsapp_window_open": view.whatsapp_window_open,
        "transcript": [asdict(line) for line in view.transcript],
    }


@router.get("/api/staff/medical/inquiries/{inquiry_id}")
def detail_api(request: Request, inquiry_id: str, ident: Reviewer) -> dict[str, Any]:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        return _detail(review.view_inquiry(session, inquiry_id, staff_id=ident.id, now=state.clock.now()))


@router.post("/api/staff/medical/inquiries/{inquiry_id}/answer")
def answer_api(request: Request, inquiry_id: str, ident: Reviewer, body: JsonBody) -> dict[str, Any]:
    data = parse(AnswerIn, body)
    outcome = _answer(app_state(request), ident, inquiry_id, text=data.text, content_id=data.content_id,
                      version=data.version, override_reason=data.override_reason)
    inquiry = outcome.inquiry
    return {"id": inquiry.id, "reference": inquiry.reference, "status": inquiry.status,
            "reviewer_id": inquiry.reviewer_id, "answered_at": inquiry.answered_at, "response": inquiry.response,
            "message_id": outcome.message.id, "approval_code": outcome.message.approval_code,
            "whatsapp_template": outcome.whatsapp_template}


@router.post("/api/staff/medical/inquiries/{inquiry_id}/close")
def close_api(request: Request, inquiry_id: str, ident: Reviewer, body: JsonBody) -> dict[str, Any]:
    data = parse(CloseIn, body)
    inquiry = _close(app_state(request), ident, inquiry_id, reason=data.reason, expected_status=data.expected_status)
    return {"id": inquiry.id, "reference": inquiry.reference, "status": inquiry.status,
            "closed_at": inquiry.closed_at, "closed_by": inquiry.closed_by, "close_reason": inquiry.close_reason}
