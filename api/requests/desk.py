"""The staff side of service requests: who works which requests, notes, status changes, and
telling the HCP (with a CSAT question) when a request is closed.

Who works what (business policy, also in the README):

* **rep** — samples, patient support / copay enrolment, reimbursement & access, contact-detail
  updates, and meetings the HCP asked to have with their representative. There is no separate
  patient-support or market-access role, and these requests are service, not medical content
  (the forms ask for no patient names), so the field team owns them.
* **msl** — literature requests and meetings with an MSL.
* **medical_reviewer** — literature requests (the Medical Information team).

Literature requests are never shown to anyone holding the rep role (COMPLIANCE: commercial /
medical firewall — what literature an HCP asks for can be an unsolicited medical question).
Territory works as in the handoff inbox: staff with a territory see requests of HCPs in their
territory, assigned to them, or with no territory known; staff without one see every territory.

Status: ``open → in_progress → resolved | cannot_fulfil`` (``open`` may close directly). A closed
request never changes again (409). Every change is a conditional update on the status the staff
member saw, so two people closing at once cannot both win. Services flush, never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, false, or_, select, true, update
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.audit.models import AuditEvent
from api.channels.whatsapp import service as wa
from api.conversations.models import Channel, Conversation, Message, SenderType
from api.conversations.service import add_outbound
from api.errors import Conflict, Forbidden, InvalidInput, NotFound
from api.hcps.models import Hcp
from api.requests.models import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    RequestKind,
    RequestStatus,
    RequestTeam,
    ServiceRequest,
    ServiceRequestNote,
)
from api.requests.service import LABEL
from api.safety.review import staff_names
from api.staff.models import StaffRole
from api.staff.service import StaffIdentity

MAX_NOTE = 2000
MAX_REASON = 1000
MAX_LIST = 200
DUE_SOON = timedelta(hours=24)
# Business-initiated on WhatsApp when the HCP's last message is over 24 hours old: the approved
# "request-update" template carries it ({{1}} = the request's reference).
WHATSAPP_PURPOSE = "request-update"

REP_KINDS = (RequestKind.samples, RequestKind.patient_support, RequestKind.access, RequestKind.contact_update)
MEDICAL_KINDS = (RequestKind.literature,)

# The statuses a request may move to, from each status.
TRANSITIONS: dict[str, tuple[RequestStatus, ...]] = {
    RequestStatus.open: (RequestStatus.in_progress, RequestStatus.resolved, RequestStatus.cannot_fulfil),
    RequestStatus.in_progress: (RequestStatus.resolved, RequestStatus.cannot_fulfil),
}
STATUS_WORDS = {
    RequestStatus.open: "open", RequestStatus.in_progress: "in progress", RequestStatus.resolved: "resolved",
    RequestStatus.cannot_fulfil: "cannot fulfil", RequestStatus.cancelled: "cancelled",
}

# Followed by the CSAT question (feedback.service.ask_csat).
RESOLVED_TEXT = "Update on your {label} (reference {reference}): it has been completed."
CANNOT_FULFIL_TEXT = ("Update on your {label} (reference {reference}): we're sorry, we could not complete "
                      "it. {reason}")


# ---------------------------------------------------------------- who sees what


def sees_medical_requests(ident: StaffIdentity) -> bool:
    return StaffRole.rep not in ident.roles and bool(ident.roles & {StaffRole.msl, StaffRole.medical_reviewer})


def _territory(ident: StaffIdentity, assigned: Any) -> ColumnElement[bool]:
    if not ident.territory:
        return true()
    return or_(ServiceRequest.hcp_id.is_(None), Hcp.territory.is_(None), Hcp.territory == ident.territory,
               assigned == ident.id)


def visible_clause(ident: StaffIdentity) -> ColumnElement[bool]:
    """The requests this staff member works (needs ``outerjoin(Hcp)``)."""
    parts: list[ColumnElement[bool]] = []
    if StaffRole.rep in ident.roles:
        kinds = or_(ServiceRequest.kind.in_(REP_KINDS),
                    and_(ServiceRequest.kind == RequestKind.meeting, ServiceRequest.team == RequestTeam.rep))
        parts.append(and_(kinds, _territory(ident, Hcp.assigned_rep_id)))
    if StaffRole.msl in ident.roles:
        parts.append(and_(ServiceRequest.kind == RequestKind.meeting, ServiceRequest.team == RequestTeam.msl,
                          _territory(ident, Hcp.assigned_msl_id)))
    if sees_medical_requests(ident):
        parts.append(ServiceRequest.kind.in_(MEDICAL_KINDS))
    return or_(*parts) if parts else false()


def get_for_staff(session: Session, request_id: str, ident: StaffIdentity) -> ServiceRequest:
    row = session.get(ServiceRequest, request_id)
    if row is None:
        raise NotFound("no such service request")
    allowed = session.execute(
        select(ServiceRequest.id).outerjoin(Hcp, Hcp.id == ServiceRequest.hcp_id)
        .where(ServiceRequest.id == request_id, visible_clause(ident))
    ).scalar_one_or_none()
    if allowed is None:
        raise Forbidden("this request is for another team or territory")
    return row


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class RequestEntry:
    request: ServiceRequest
    hcp: Hcp | None
    due: str  # overdue | due_soon | on_time | closed

    @property
    def overdue(self) -> bool:
        return self.due == "overdue"


def due_state(row: ServiceRequest, now: datetime) -> str:
    if row.status not in OPEN_STATUSES:
        return "closed"
    if row.sla_due_at <= now:
        return "overdue"
    return "due_soon" if row.sla_due_at - now <= DUE_SOON else "on_time"


STATUS_FILTERS = {"": OPEN_STATUSES, "open": (RequestStatus.open,), "in_progress": (RequestStatus.in_progress,),
                  "closed": CLOSED_STATUSES, "resolved": (RequestStatus.resolved,),
                  "cannot_fulfil": (RequestStatus.cannot_fulfil,), "all": tuple(RequestStatus)}


def list_requests(session: Session, ident: StaffIdentity, *, now: datetime, status: str = "", kind: str = "",
                  limit: int = MAX_LIST, offset: int = 0) -> list[RequestEntry]:
    """Open requests first by SLA due (overdue at the top); ``status``: open, in_progress, closed, all …"""
    if status not in STATUS_FILTERS:
        raise InvalidInput(f"unknown status filter {status!r}; use one of {', '.join(k for k in STATUS_FILTERS if k)}")
    if kind and kind not in RequestKind.__members__:
        raise InvalidInput(f"unknown request kind {kind!r}; kinds are {', '.join(RequestKind)}")
    stmt = (select(ServiceRequest, Hcp).outerjoin(Hcp, Hcp.id == ServiceRequest.hcp_id)
            .where(visible_clause(ident), ServiceRequest.status.in_(STATUS_FILTERS[status])))
    if kind:
        stmt = stmt.where(ServiceRequest.kind == kind)
    order = (ServiceRequest.sla_due_at, ServiceRequest.id) if status in ("", "open", "in_progress") else \
        (ServiceRequest.created_at.desc(), ServiceRequest.id)
    rows = session.execute(stmt.order_by(*order).offset(offset).limit(limit)).all()
    return [RequestEntry(r, h, due_state(r, now)) for r, h in rows]


@dataclass(frozen=True)
class NoteView:
    at: datetime
    staff: str
    text: str


@dataclass(frozen=True)
class TrailLine:
    at: datetime
    action: str
    actor: str
    data: dict[str, Any]


@dataclass(frozen=True)
class RequestView:
    request: ServiceRequest
    hcp: Hcp | None
    due: str
    notes: list[NoteView]
    trail: list[TrailLine]
    allowed: tuple[RequestStatus, ...]
    closed_by_name: str | None
    csat: int | None  # the HCP's score for this request, once given
    csat_asked: bool
    whatsapp_window_open: bool | None


def view_request(session: Session, request_id: str, ident: StaffIdentity, *, now: datetime) -> RequestView:
    from feedback.models import SurveyKind, SurveyResponse

    row = get_for_staff(session, request_id, ident)
    notes = list(session.execute(select(ServiceRequestNote).where(ServiceRequestNote.service_request_id == row.id)
                                 .order_by(ServiceRequestNote.created_at, ServiceRequestNote.id)).scalars())
    events = list(session.execute(select(AuditEvent).where(AuditEvent.subject_type == "service_request",
                                                           AuditEvent.subject_id == row.id)
                                  .order_by(AuditEvent.seq)).scalars())
    names = staff_names(session, [n.staff_id for n in notes] + [e.actor_id for e in events] + [row.closed_by])
    survey = session.execute(select(SurveyResponse).where(SurveyResponse.service_request_id == row.id,
                                                          SurveyResponse.kind == SurveyKind.csat)
                             .order_by(SurveyResponse.asked_at.desc()).limit(1)).scalar_one_or_none()
    conv = session.get(Conversation, row.conversation_id)
    window = (wa.in_session_window(conv, now) if conv is not None and conv.channel == Channel.whatsapp else None)
    return RequestView(
        request=row, hcp=session.get(Hcp, row.hcp_id) if row.hcp_id else None, due=due_state(row, now),
        notes=[NoteView(n.created_at, names.get(n.staff_id, "staff"), n.text) for n in notes],
        trail=[TrailLine(e.at, e.action, names.get(e.actor_id or "", e.actor_type) if e.actor_type == "staff"
                         else e.actor_type, {k: v for k, v in (e.data or {}).items() if k != "text"})
               for e in events],
        allowed=TRANSITIONS.get(row.status, ()), closed_by_name=names.get(row.closed_by or ""),
        csat=survey.score if survey is not None else None, csat_asked=survey is not None,
        whatsapp_window_open=window,
    )


# ---------------------------------------------------------------- acting


def add_note(session: Session, request_id: str, ident: StaffIdentity, *, text: str,
             now: datetime) -> ServiceRequestNote:
    row = get_for_staff(session, request_id, ident)
    text = (text or "").strip()
    if not text:
        raise InvalidInput("the note is empty")
    if len(text) > MAX_NOTE:
        raise InvalidInput(f"the note is longer than {MAX_NOTE} characters")
    note = ServiceRequestNote(service_request_id=row.id, staff_id=ident.id, text=text, created_at=now)
    session.add(note)
    row.updated_at = now
    session.flush()
    # The note's words stay out of the audit chain (it survives erasure); its length and id go in.
    audit.record(session, action="service_request.note_added", subject_type="service_request", subject_id=row.id,
                 actor_type="staff", actor_id=ident.id, data={"note_id": note.id, "chars": len(text)}, at=now)
    return note


@dataclass(frozen=True)
class StatusOutcome:
    request: ServiceRequest
    message: Message | None       # what the HCP was told (resolved / cannot fulfil)
    whatsapp_template: str | None  # the purpose whose template carries it (outside the 24-hour window)
    survey_id: str | None


def _parse_status(value: str) -> RequestStatus:
    try:
        return RequestStatus(value)
    except ValueError as exc:
        moves = sorted({str(s) for targets in TRANSITIONS.values() for s in targets})
        raise InvalidInput(f"unknown status {value!r}; a request can move to {', '.join(moves)}") from exc


def _refuse(row: ServiceRequest, target: RequestStatus, session: Session, *, stale: bool = False) -> Conflict:
    session.refresh(row)
    seen = STATUS_WORDS.get(RequestStatus(row.status), row.status) if row.status in RequestStatus.__members__ \
        else row.status
    allowed = TRANSITIONS.get(row.status, ())
    if stale and allowed:
        msg = f"{row.reference} changed while you were looking: it is now {seen}; reload and try again"
    elif not allowed:
        who = staff_names(session, [row.closed_by]).get(row.closed_by or "")
        by = f" by {who}" if who else ""
        when = f" at {row.completed_at:%d %b %Y %H:%M} UTC" if row.completed_at else ""
        msg = f"{row.reference} is already {seen}{by}{when}; a closed request cannot change"
    else:
        msg = (f"{row.reference} is {seen}; it can move to "
               f"{', '.join(STATUS_WORDS[s] for s in allowed)}, not {STATUS_WORDS[target]}")
    return Conflict(msg, detail={"status": row.status, "allowed": [str(s) for s in allowed]})


def change_status(session: Session, request_id: str, ident: StaffIdentity, *, status: str, now: datetime,
                  reason: str | None = None, expected_status: str | None = None) -> StatusOutcome:
    """Move a request on. Closing it (resolved / cannot fulfil) tells the HCP on their channel and
    asks CSAT (1-5) for this request. Call ``deliver_after_commit`` once the transaction committed."""
    target = _parse_status(status)
    row = get_for_staff(session, request_id, ident)
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
    if target == RequestStatus.cannot_fulfil and not reason:
        raise InvalidInput("say why the request cannot be fulfilled (the HCP is told)")
    if expected_status and expected_status != row.status:
        raise _refuse(row, target, session, stale=True)
    if target not in TRANSITIONS.get(row.status, ()):
        raise _refuse(row, target, session)
    seen = row.status
    closing = target in (RequestStatus.resolved, RequestStatus.cannot_fulfil)
    values: dict[str, Any] = {"status": target, "updated_at": now}
    if closing:
        values.update(completed_at=now, closed_by=ident.id,
                      outcome_reason=reason if target == RequestStatus.cannot_fulfil else None)
    moved = session.execute(
        update(ServiceRequest).where(ServiceRequest.id == row.id, ServiceRequest.status == seen)
        .values(**values).execution_options(synchronize_session=False))
    if int(cast(CursorResult[Any], moved).rowcount) == 0:  # someone else moved it a moment ago
        raise _refuse(row, target, session, stale=True)
    session.refresh(row)
    message: Message | None = None
    template: str | None = None
    survey_id: str | None = None
    if closing:
        message, template, survey_id = _tell_hcp(session, row, ident, now)
    audit.record(session, action=f"service_request.{target}", subject_type="service_request", subject_id=row.id,
                 actor_type="staff", actor_id=ident.id,
                 data={"reference": row.reference, "from": seen, "to": target,
                       "reason_chars": len(reason) if reason else None,
                       "message_id": message.id if message else None, "whatsapp_template": template,
                       "survey_id": survey_id, "sla_met": (now <= row.sla_due_at) if closing else None}, at=now)
    return StatusOutcome(row, message, template, survey_id)


def _tell_hcp(session: Session, row: ServiceRequest, ident: StaffIdentity,
              now: datetime) -> tuple[Message | None, str | None, str | None]:
    from feedback import service as feedback

    conv = session.get(Conversation, row.conversation_id)
    if conv is None:
        return None, None, None
    label = LABEL[RequestKind(row.kind)]
    csat = feedback.ask_csat(session, conv, about="service_request", now=now, service_request_id=row.id)
    if row.status == RequestStatus.resolved:
        text = RESOLVED_TEXT.format(label=label, reference=row.reference)
    else:
        reason = (row.outcome_reason or "").strip()
        text = CANNOT_FULFIL_TEXT.format(label=label, reference=row.reference,
                                         reason=reason if reason.endswith((".", "!", "?")) else reason + ".")
    text = f"{text} {csat.question}"
    msg = add_outbound(session, conv, text=text, now=now, sender_type=SenderType.staff, sender_id=ident.id,
                       buttons=csat.buttons)
    template = wa.business_initiated_if_window_closed(session, conv, msg, purpose=WHATSAPP_PURPOSE,
                                                      variables={"1": row.reference}, now=now)
    audit.record(session, action="staff.message_sent", subject_type="conversation", subject_id=conv.id,
                 actor_type="staff", actor_id=ident.id,
                 data={"message_id": msg.id, "purpose": "request-update", "kind": "request_outcome",
                       "service_request_id": row.id, "chars": len(text)}, at=now)
    return msg, template, csat.survey.id
