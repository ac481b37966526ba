"""Work on the safety records by Medical and Patient Safety: the service behind two consoles.

*Medical review* — open medical inquiries with their context, answered in the reviewer's own
words (attributed) or with one approved content item (verbatim, through the send-time gate),
or closed with a reason. *Safety* — adverse-event and quality-complaint cases with their
regulatory clock, the four minimum criteria, the source messages, status changes along the
allowed transitions, and a JSON export of one case.

Services take a session and never commit. Reading an inquiry's or a case's content is itself
audited (who looked at what, when), as is every change. Two reviewers acting on one record are
settled by conditional updates: the first change wins, the other gets a Conflict naming who
made it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, case, select, update
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.audit.models import AuditEvent
from api.channels.whatsapp import service as wa
from api.conversations.models import Channel, Conversation, Message, SenderType
from api.conversations.outbound import MAX_STAFF_TEXT, send_staff_content, send_staff_text
from api.errors import Conflict, InvalidInput, NotFound
from api.hcps.models import Hcp
from api.safety import service as safety
from api.safety.models import (
    REQUIRED_CRITERIA,
    AdverseEvent,
    AdverseEventMessage,
    AeKind,
    AeStatus,
    InquiryStatus,
    MedicalInquiry,
    Seriousness,
)
from api.staff import notes
from api.staff.models import StaffUser

MAX_REASON = 1000
MAX_LIST = 200
TRANSCRIPT_BEFORE = 20
TRANSCRIPT_AFTER = 20
ANSWER_PURPOSE = "medical_inquiry_answer"
# Outside WhatsApp's 24-hour window the answer goes out as this approved template ({{1}} = reference).
WHATSAPP_TEMPLATE_PURPOSE = "medical-inquiry-answered"

REASON_LABELS = {
    "population": "Off-label population (a patient group outside the label, e.g. children)",
    "indication": "Off-label indication (a use the product is not approved for)",
    "dose": "Off-label dose (outside the labelled dosing)",
    "explicit": "The HCP asked about off-label use",
    "unanswered": "No approved answer in the library; the HCP asked for Medical Information",
}

CRITERION_LABELS = {
    "reporter": "Identifiable reporter",
    "patient": "Identifiable patient",
    "product": "Suspect product",
    "event": "Adverse event / problem",
}
CRITERIA = ("reporter", "patient", "product", "event")

DUE_SOON_DAYS = 3
# Where a case may go next. Nothing is ever deleted; a closed case can be reopened when
# follow-up information arrives. Submission needs a valid case (minimum criteria, seriousness).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    AeStatus.new: (AeStatus.triaged, AeStatus.closed),
    AeStatus.triaged: (AeStatus.submitted, AeStatus.closed),
    AeStatus.submitted: (AeStatus.closed,),
    AeStatus.closed: (AeStatus.triaged,),
}
ASSESSED = (Seriousness.serious, Seriousness.non_serious)


# ---------------------------------------------------------------- shared views


@dataclass(frozen=True)
class HcpCard:
    hcp_id: str | None
    name: str | None
    specialty: str | None
    country: str | None
    verification: str  # verified | pending | rejected | unidentified
    channel: str
    market: str | None


@dataclass(frozen=True)
class TranscriptLine:
    id: int
    at: datetime
    direction: str
    sender_type: str
    sender: str
    body: str
    status: str
    approval_code: str | None
    marked: bool  # the inquiry's question / a case's source message


@dataclass(frozen=True)
class TrailEntry:
    seq: int
    at: datetime
    action: str
    actor_type: str
    actor_id: str | None
    actor: str
    data: dict[str, Any]


def mi_label(inquiry: MedicalInquiry) -> str:
    """A medical answer speaks for Medical Information, with the inquiry's reference."""
    return f"Medical Information · {inquiry.reference}"


def staff_names(session: Session, ids: Collection[str | None]) -> dict[str, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = session.execute(select(StaffUser.id, StaffUser.name).where(StaffUser.id.in_(wanted))).all()
    return {row.id: row.name for row in rows}


def hcp_card(session: Session, conv: Conversation, hcp_id: str | None) -> HcpCard:
    hcp = session.get(Hcp, hcp_id) if hcp_id else None
    if hcp is None:
        return HcpCard(None, None, None, None, "unidentified", conv.channel, conv.market)
    return HcpCard(hcp.id, hcp.name, hcp.specialty, hcp.country, hcp.verification_status, conv.channel,
                   conv.market or hcp.country)


def _sender(msg: Message, names: Mapping[str, str]) -> str:
    if msg.sender_type == SenderType.staff:
        return names.get(msg.sender_id or "", "staff")
    return {"hcp": "HCP", "bot": "Bot", "system": "System"}.get(msg.sender_type, msg.sender_type)


def transcript(session: Session, conversation_id: str, *, around: Sequence[int], marked: Collection[int],
               before: int = TRANSCRIPT_BEFORE, after: int = TRANSCRIPT_AFTER) -> list[TranscriptLine]:
    """The conversation around the given messages (all of them, and some context either side)."""
    base = select(Message).where(Message.conversation_id == conversation_id)
    if around:
        lo, hi = min(around), max(around)
        earlier = session.execute(base.where(Message.id < lo).order_by(Message.id.desc()).limit(before)).scalars()
        middle = session.execute(base.where(Message.id.between(lo, hi)).order_by(Message.id).limit(500)).scalars()
        later = session.execute(base.where(Message.id > hi).order_by(Message.id).limit(after)).scalars()
        messages = [*reversed(list(earlier)), *middle, *later]
    else:
        messages = list(reversed(list(session.execute(base.order_by(Message.id.desc()).limit(before)).scalars())))
    names = staff_names(session, [m.sender_id for m in messages if m.sender_type == SenderType.staff])
    return [TranscriptLine(m.id, m.created_at, m.direction, m.sender_type, _sender(m, names), m.body, m.status,
                           m.approval_code, m.id in marked) for m in messages]


def _rowcount(result: object) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _trail(session: Session, subject_type: str, subject_id: str) -> list[TrailEntry]:
    events = list(session.execute(
        select(AuditEvent).where(AuditEvent.subject_type == subject_type, AuditEvent.subject_id == subject_id)
        .order_by(AuditEvent.seq)).scalars())
    names = staff_names(session, [e.actor_id for e in events if e.actor_type == "staff"])
    return [TrailEntry(e.seq, e.at, e.action, e.actor_type, e.actor_id,
                       names.get(e.actor_id or "", e.actor_type) if e.actor_type == "staff" else e.actor_type,
                       data) for e, data in zip(events, notes.resolve(session, (e.data or {} for e in events)),
                                                strict=True)]


def record_refused(session: Session, *, subject_type: str, subject_id: str, action: str, staff_id: str,
                   code: str, message: str, now: datetime) -> None:
    """Audit an attempt on an existing record that was refused (its transaction rolled back)."""
    audit.record(session, action=f"{subject_type}.{action}_refused", subject_type=subject_type,
                 subject_id=subject_id, actor_type="staff", actor_id=staff_id,
                 data={"code": code, "message": message[:500]}, at=now)


def _clean_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
    return reason


# ---------------------------------------------------------------- medical inquiries


def reason_label(code: str) -> str:
    return REASON_LABELS.get(code, code)


def _inquiry_status(status: str | None) -> str | None:
    if not status or status == "all":
        return None
    if status not in InquiryStatus.__members__:
        raise InvalidInput(f"unknown status {status!r}; use one of: all, {', '.join(InquiryStatus)}")
    return status


def list_inquiries(session: Session, *, status: str | None = None, product: str | None = None,
                   limit: int = MAX_LIST, offset: int = 0) -> list[MedicalInquiry]:
    """Open inquiries first, then the rest; oldest first within each."""
    query = select(MedicalInquiry)
    wanted = _inquiry_status(status)
    if wanted is not None:
        query = query.where(MedicalInquiry.status == wanted)
    if product:
        query = query.where(MedicalInquiry.product == product)
    open_first = case((MedicalInquiry.status == InquiryStatus.open, 0), else_=1)
    query = query.order_by(open_first, MedicalInquiry.created_at, MedicalInquiry.id).offset(offset).limit(limit)
    return list(session.execute(query).scalars())


def inquiry_products(session: Session) -> list[str]:
    return sorted(p for p in session.execute(
        select(MedicalInquiry.product).where(MedicalInquiry.product.is_not(None)).distinct()).scalars() if p)


def get_inquiry(session: Session, inquiry_id: str) -> MedicalInquiry:
    inquiry = session.get(MedicalInquiry, inquiry_id)
    if inquiry is None:
        raise NotFound("medical inquiry not found")
    return inquiry


def inquiry_cards(session: Session, inquiries: Sequence[MedicalInquiry]) -> dict[str, HcpCard]:
    """The HCP card of each listed inquiry, by inquiry id."""
    convs = {c.id: c for c in session.execute(select(Conversation).where(
        Conversation.id.in_({i.conversation_id for i in inquiries}))).scalars()} if inquiries else {}
    return {i.id: hcp_card(session, convs[i.conversation_id], i.hcp_id or convs[i.conversation_id].hcp_id)
            for i in inquiries}


def record_inquiry_list_view(session: Session, inquiries: Sequence[MedicalInquiry], *, staff_id: str,
                             filters: Mapping[str, str | None], now: datetime) -> None:
    audit.record(session, action="medical_inquiry.list_viewed", subject_type="medical_inquiry", subject_id=None,
                 actor_type="staff", actor_id=staff_id,
                 data={"ids": [i.id for i in inquiries], "filters": dict(filters)}, at=now)


@dataclass(frozen=True)
class InquiryView:
    inquiry: MedicalInquiry
    reasons: list[str]
    hcp: HcpCard
    transcript: list[TranscriptLine]
    reviewer_name: str | None
    closed_by_name: str | None
    response_message: Message | None
    whatsapp_window_open: bool | None  # None: not a WhatsApp conversation


def view_inquiry(session: Session, inquiry_id: str, *, staff_id: str, now: datetime) -> InquiryView:
    """Everything a reviewer needs to answer, and an audit record that they saw it."""
    inquiry = get_inquiry(session, inquiry_id)
    conv = session.get(Conversation, inquiry.conversation_id)
    assert conv is not None
    names = staff_names(session, [inquiry.reviewer_id, inquiry.closed_by])
    marked = [inquiry.message_id] if inquiry.message_id is not None else []
    if inquiry.response_message_id is not None:
        marked.append(inquiry.response_message_id)
    lines = transcript(session, conv.id, around=marked, marked=marked)
    response = session.get(Message, inquiry.response_message_id) if inquiry.response_message_id else None
    audit.record(session, action="medical_inquiry.viewed", subject_type="medical_inquiry", subject_id=inquiry.id,
                 actor_type="staff", actor_id=staff_id, data={"status": inquiry.status}, at=now)
    return InquiryView(
        inquiry=inquiry, reasons=[reason_label(r) for r in inquiry.reasons or []],
        hcp=hcp_card(session, conv, inquiry.hcp_id or conv.hcp_id), transcript=lines,
        reviewer_name=names.get(inquiry.reviewer_id or ""), closed_by_name=names.get(inquiry.closed_by or ""),
        response_message=response,
        whatsapp_window_open=wa.in_session_window(conv, now) if conv.channel == Channel.whatsapp else None,
    )


@dataclass(frozen=True)
class ContentOption:
    content_id: str
    version: int
    title: str
    product: str
    kind: str
    blocked: str | None  # why the gate would refuse it for this HCP today; None: sendable


def content_options(session: Session, inquiry: MedicalInquiry, *, default_market: str,
                    now: datetime) -> list[ContentOption]:
    """Approved items a reviewer may pick: the inquiry's product first, sendable ones first."""
    from api.content import recipient_for
    from knowledge.gate import gate_reason
    from knowledge.service import list_items

    conv = session.get(Conversation, inquiry.conversation_id)
    assert conv is not None
    recipient = recipient_for(session, conv, default_market)
    options = [ContentOption(s.content_id, s.current_version, s.title, s.product, s.kind,
                             gate_reason(s, recipient, now.date())) for s in list_items(session)]
    return sorted(options, key=lambda o: (o.product != inquiry.product, o.blocked is not None, o.content_id))


def _taken(session: Session, inquiry: MedicalInquiry) -> Conflict:
    session.refresh(inquiry)
    if inquiry.status == InquiryStatus.answered:
        who, when = inquiry.reviewer_id, inquiry.answered_at
    else:
        who, when = inquiry.closed_by, inquiry.closed_at
    name = staff_names(session, [who]).get(who or "", "another reviewer")
    at = when.strftime("%d %b %Y %H:%M UTC") if when else "an earlier time"
    return Conflict(f"{inquiry.reference} was already {inquiry.status} by {name} at {at}",
                    detail={"status": inquiry.status, "by": who, "by_name": name,
                            "at": when.isoformat() if when else None})


def _current_version(session: Session, content_id: str) -> int:
    from knowledge.models import ContentItem

    item = session.get(ContentItem, content_id)
    if item is None:
        raise InvalidInput(f"there is no approved content item {content_id!r}")
    return item.current_version


@dataclass(frozen=True)
class AnswerOutcome:
    inquiry: MedicalInquiry
    message: Message
    conversation_id: str
    whatsapp_template: str | None  # the purpose whose template carries it (outside the 24-hour window)


def answer_inquiry(
    session: Session,
    inquiry_id: str,
    *,
    reviewer_id: str,
    text: str | None = None,
    content_id: str | None = None,
    version: int | None = None,
    now: datetime,
    default_market: str,
) -> AnswerOutcome:
    """Answer an open inquiry to the HCP on their channel: free text or one approved item.

    The first reviewer to answer wins (conditional update on ``status = open``); the message is
    queued in the same transaction, so a gated item (ContentGated) or bad input leaves nothing
    changed and nothing sent. Call ``deliver_after_commit`` once the transaction committed.
    """
    inquiry = get_inquiry(session, inquiry_id)
    text = (text or "").strip() or None
    content_id = (content_id or "").strip() or None
    if (text is None) == (content_id is None):
        raise InvalidInput("answer with either your own text or one approved content item (not both, not neither)")
    if text is not None and len(text) > MAX_STAFF_TEXT:
        raise InvalidInput(f"the answer is longer than {MAX_STAFF_TEXT} characters")
    if content_id is not None and len(content_id) > 64:
        raise InvalidInput("that is not a content item id")
    if inquiry.status != InquiryStatus.open:
        raise _taken(session, inquiry)
    if content_id is not None and version is None:
        version = _current_version(session, content_id)
    conv = session.get(Conversation, inquiry.conversation_id)
    assert conv is not None

    claimed = session.execute(
        update(MedicalInquiry)
        .where(MedicalInquiry.id == inquiry.id, MedicalInquiry.status == InquiryStatus.open)
        .values(status=InquiryStatus.answered, reviewer_id=reviewer_id, answered_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(claimed) == 0:
        raise _taken(session, inquiry)

    if text is not None:
        msg = send_staff_text(session, conv, staff_id=reviewer_id, text=text, now=now, purpose=ANSWER_PURPOSE,
                              sender_label=mi_label(inquiry))
    else:
        assert content_id is not None and version is not None
        msg = send_staff_content(session, conv, staff_id=reviewer_id, content_id=content_id, version=version,
                                 now=now, default_market=default_market, purpose=ANSWER_PURPOSE,
                                 sender_label=mi_label(inquiry))
    template = wa.business_initiated_if_window_closed(session, conv, msg, purpose=WHATSAPP_TEMPLATE_PURPOSE,
                                                      variables={"1": inquiry.reference}, now=now)
    session.refresh(inquiry)
    inquiry.response = msg.body
    inquiry.response_message_id = msg.id
    session.flush()
    audit.record(session, action="medical_inquiry.answered", subject_type="medical_inquiry", subject_id=inquiry.id,
                 actor_type="staff", actor_id=reviewer_id,
                 data={"reference": inquiry.reference, "message_id": msg.id, "channel": conv.channel,
                       "kind": "free_text" if text is not None else "approved_content",
                       "content_id": msg.content_id, "version": msg.content_version,
                       "approval_code": msg.approval_code, "whatsapp_template": template}, at=now)
    return AnswerOutcome(inquiry, msg, conv.id, template)


def close_inquiry(session: Session, inquiry_id: str, *, reviewer_id: str, reason: str | None,
                  expected_status: str | None = None, now: datetime) -> MedicalInquiry:
    """Close an open (reason required) or answered inquiry; nothing is sent to the HCP."""
    inquiry = get_inquiry(session, inquiry_id)
    reason = _clean_reason(reason)
    if inquiry.status == InquiryStatus.closed:
        raise _taken(session, inquiry)
    if expected_status and expected_status != inquiry.status:
        raise _taken(session, inquiry)
    if inquiry.status == InquiryStatus.open and not reason:
        raise InvalidInput("say why the inquiry is closed without an answer")
    seen = inquiry.status
    closed = session.execute(
        update(MedicalInquiry)
        .where(MedicalInquiry.id == inquiry.id, MedicalInquiry.status == seen)
        .values(status=InquiryStatus.closed, closed_at=now, closed_by=reviewer_id, close_reason=reason or None)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(closed) == 0:
        raise _taken(session, inquiry)
    session.refresh(inquiry)
    audit.record(session, action="medical_inquiry.closed", subject_type="medical_inquiry", subject_id=inquiry.id,
                 actor_type="staff", actor_id=reviewer_id,
                 data={"reference": inquiry.reference, "answered": seen == InquiryStatus.answered,
                       **notes.keep(session, reason, subject_type="medical_inquiry", subject_id=inquiry.id,
                                    field="reason", author_id=reviewer_id, at=now)}, at=now)
    return inquiry


# ---------------------------------------------------------------- adverse events


@dataclass(frozen=True)
class CaseClock:
    day0_at: datetime
    due_at: datetime
    deadline_days: int  # 15 (serious or not yet assessed) or 90 (non-serious, EU)
    days_left: int  # calendar days (UTC) from today to the due date; negative once past
    running: bool  # the clock stops once the case is submitted or closed
    overdue: bool
    due_soon: bool

    @property
    def label(self) -> str:
        if not self.running:
            return "clock stopped"
        if self.overdue:
            late = -self.days_left
            return "overdue (due today)" if late <= 0 else f"overdue by {late} day{'s' if late != 1 else ''}"
        if self.days_left == 0:
            return "due today"
        return f"{self.days_left} day{'s' if self.days_left != 1 else ''} left"

    @property
    def badge(self) -> str:
        if not self.running:
            return ""
        return "overdue" if self.overdue else ("due-soon" if self.due_soon else "ok")


def case_clock(case: AdverseEvent, now: datetime) -> CaseClock:
    """The regulatory clock as ``api.safety.service.due_at`` set it (day 0 + 15 or 90 days)."""
    running = case.status in safety.OPEN_STATUSES
    days_left = (case.due_at.date() - now.date()).days
    overdue = running and now > case.due_at
    return CaseClock(
        day0_at=case.day0_at, due_at=case.due_at, deadline_days=(case.due_at - case.day0_at).days,
        days_left=days_left, running=running, overdue=overdue,
        due_soon=running and not overdue and days_left <= DUE_SOON_DAYS,
    )


@dataclass(frozen=True)
class Criterion:
    name: str
    label: str
    known: bool
    required: bool


def case_criteria(case: AdverseEvent) -> list[Criterion]:
    required = REQUIRED_CRITERIA.get(case.kind, REQUIRED_CRITERIA[AeKind.adverse_event])
    return [Criterion(n, CRITERION_LABELS[n], bool(getattr(case, f"has_{n}")), n in required) for n in CRITERIA]


def _case_status(status: str | None) -> tuple[str, ...] | None:
    if not status or status == "open":
        return tuple(str(s) for s in safety.OPEN_STATUSES)
    if status == "all":
        return None
    if status not in AeStatus.__members__:
        raise InvalidInput(f"unknown status {status!r}; use one of: open, all, {', '.join(AeStatus)}")
    return (status,)


def list_cases(session: Session, *, status: str | None = "open", kind: str | None = None,
               limit: int = MAX_LIST, offset: int = 0, assignee: str | None = None,
               staff_id: str | None = None) -> list[AdverseEvent]:
    """Cases by urgency: the nearest deadline first (open cases before finished ones).

    ``assignee``: ``mine`` (``staff_id``'s), ``none`` (in the team's queue) or all.
    """
    query = select(AdverseEvent)
    if assignee == "mine":
        query = query.where(AdverseEvent.assignee_id == staff_id)
    elif assignee == "none":
        query = query.where(AdverseEvent.assignee_id.is_(None))
    elif assignee:
        raise InvalidInput(f"unknown assignee filter {assignee!r}; use mine or none")
    wanted = _case_status(status)
    if wanted is not None:
        query = query.where(AdverseEvent.status.in_(wanted))
    if kind:
        if kind not in AeKind.__members__:
            raise InvalidInput(f"unknown kind {kind!r}; use one of: {', '.join(AeKind)}")
        query = query.where(AdverseEvent.kind == kind)
    open_first = case((AdverseEvent.status.in_([str(s) for s in safety.OPEN_STATUSES]), 0), else_=1)
    query = query.order_by(open_first, AdverseEvent.due_at, AdverseEvent.created_at, AdverseEvent.id)
    query = query.offset(offset).limit(limit)
    return list(session.execute(query).scalars())


def get_case(session: Session, case_id: str) -> AdverseEvent:
    found = session.get(AdverseEvent, case_id)
    if found is None:
        raise NotFound("adverse event not found")
    return found


def record_case_list_view(session: Session, cases: Sequence[AdverseEvent], *, staff_id: str,
                          filters: Mapping[str, str | None], now: datetime) -> None:
    audit.record(session, action="adverse_event.list_viewed", subject_type="adverse_event", subject_id=None,
                 actor_type="staff", actor_id=staff_id,
                 data={"ids": [c.id for c in cases], "filters": dict(filters)}, at=now)


@dataclass(frozen=True)
class SourceMessage:
    id: int
    at: datetime
    linked_at: datetime
    channel: str
    direction: str
    sender_type: str
    body: str


def source_messages(session: Session, case_id: str) -> list[SourceMessage]:
    rows = session.execute(
        select(Message, AdverseEventMessage.created_at)
        .join(AdverseEventMessage, AdverseEventMessage.message_id == Message.id)
        .where(AdverseEventMessage.adverse_event_id == case_id)
        .order_by(Message.id)
    ).all()
    return [SourceMessage(m.id, m.created_at, linked, m.channel, m.direction, m.sender_type, m.body)
            for m, linked in rows]


@dataclass(frozen=True)
class CaseView:
    case: AdverseEvent
    clock: CaseClock
    criteria: list[Criterion]
    sources: list[SourceMessage]
    transcript: list[TranscriptLine]
    hcp: HcpCard
    transitions: tuple[str, ...]
    trail: list[TrailEntry]


def view_case(session: Session, case_id: str, *, staff_id: str, now: datetime) -> CaseView:
    """The case with its evidence and history, and an audit record that it was read."""
    found = get_case(session, case_id)
    conv = session.get(Conversation, found.conversation_id)
    assert conv is not None
    sources = source_messages(session, found.id)
    ids = [s.id for s in sources]
    audit.record(session, action="adverse_event.viewed", subject_type="adverse_event", subject_id=found.id,
                 actor_type="staff", actor_id=staff_id, data={"status": found.status}, at=now)
    return CaseView(
        case=found, clock=case_clock(found, now), criteria=case_criteria(found), sources=sources,
        transcript=transcript(session, conv.id, around=ids, marked=ids),
        hcp=hcp_card(session, conv, found.hcp_id or conv.hcp_id),
        transitions=TRANSITIONS.get(found.status, ()), trail=_trail(session, "adverse_event", found.id),
    )


def change_status(session: Session, case_id: str, *, to: str, actor_id: str, now: datetime,
                  expected: str | None = None, reason: str | None = None) -> AdverseEvent:
    """Move a case along ``TRANSITIONS``; closing and reopening need a reason."""
    found = get_case(session, case_id)
    reason = _clean_reason(reason)
    if to not in AeStatus.__members__:
        raise InvalidInput(f"unknown status {to!r}; statuses are {', '.join(AeStatus)}")
    if expected and expected not in AeStatus.__members__:
        raise InvalidInput(f"unknown status {expected!r}")
    current = found.status
    if expected and expected != current:
        raise Conflict(f"{found.reference} changed meanwhile: it is now {current}",
                       detail={"status": current})
    allowed = TRANSITIONS.get(current, ())
    if to not in allowed:
        raise Conflict(f"a {current} case cannot become {to}; allowed next: {', '.join(allowed) or 'none'}",
                       detail={"status": current, "allowed": list(allowed)})
    if to == AeStatus.submitted:
        missing = found.missing_criteria
        if missing:
            raise Conflict(f"{found.reference} is not a valid case yet: missing {', '.join(missing)}",
                           detail={"missing": missing})
        if found.kind == AeKind.adverse_event and found.seriousness not in ASSESSED:
            raise Conflict(f"assess the seriousness of {found.reference} before submitting it")
    if (to == AeStatus.closed or current == AeStatus.closed) and not reason:
        raise InvalidInput("say why" + (" the case is closed" if to == AeStatus.closed else " the case is reopened"))
    moved = session.execute(
        update(AdverseEvent).where(AdverseEvent.id == found.id, AdverseEvent.status == current)
        .values(status=to, updated_at=now).execution_options(synchronize_session=False)
    )
    if _rowcount(moved) == 0:
        session.refresh(found)
        raise Conflict(f"{found.reference} changed meanwhile: it is now {found.status}",
                       detail={"status": found.status})
    session.refresh(found)
    audit.record(session, action="adverse_event.status", subject_type="adverse_event", subject_id=found.id,
                 actor_type="staff", actor_id=actor_id,
                 data={"status": to, "from": current,
                       **notes.keep(session, reason, subject_type="adverse_event", subject_id=found.id,
                                    field="reason", author_id=actor_id, at=now)}, at=now)
    return found


def safety_colleagues(session: Session) -> list[StaffUser]:
    """Active staff with the safety role: whom a case can be assigned to."""
    return [u for u in session.scalars(select(StaffUser).where(StaffUser.active.is_(True)).order_by(StaffUser.name))
            if "safety" in (u.roles or [])]


def assign_case(session: Session, case_id: str, *, actor_id: str, now: datetime, take: bool,
                expected: str | None = None, to: str | None = None) -> AdverseEvent:
    """Take a case (``take=True``), assign it to a colleague (``to``), or put it back in the
    team's queue, atomically.

    ``expected`` is the assignee the staff member saw (``""``: nobody): taking or assigning a case
    somebody else holds needs it, so two people clicking at once cannot both win and nobody moves a
    case without having seen who had it. Releasing is for the assignee only. ``to`` must be an
    active colleague with the safety role.
    """
    found = get_case(session, case_id)
    current = found.assignee_id
    target = actor_id
    if to is not None and take:
        colleague = session.get(StaffUser, to)
        if colleague is None or not colleague.active or "safety" not in (colleague.roles or []):
            raise InvalidInput("a case can be assigned only to an active colleague in the safety team")
        target = colleague.id
    names = staff_names(session, [current, actor_id, target])
    if take:
        if current == target:
            return found
        if current is not None and expected != current:
            raise Conflict(f"{found.reference} is being worked by {names.get(current, 'someone else')}; "
                           "reload to see it, then take it over if you must",
                           detail={"assignee_id": current, "assignee": names.get(current)})
        if current is None and expected:
            raise Conflict(f"{found.reference} changed meanwhile: nobody holds it now", detail={"assignee_id": None})
        values: dict[str, Any] = {"assignee_id": target, "assigned_at": now, "updated_at": now}
    else:
        if current is None:
            return found
        if current != actor_id:
            raise Conflict(f"only {names.get(current, 'the assignee')} can put {found.reference} back in the queue",
                           detail={"assignee_id": current, "assignee": names.get(current)})
        values = {"assignee_id": None, "assigned_at": None, "updated_at": now}
    guard = AdverseEvent.assignee_id.is_(None) if current is None else AdverseEvent.assignee_id == current
    moved = session.execute(update(AdverseEvent).where(AdverseEvent.id == found.id, guard)
                            .values(**values).execution_options(synchronize_session=False))
    if _rowcount(moved) == 0:
        session.refresh(found)
        holder = found.assignee_id
        raise Conflict(f"{found.reference} changed meanwhile: "
                       + (f"{staff_names(session, [holder]).get(holder, 'someone')} has it" if holder else
                          "nobody holds it now"), detail={"assignee_id": holder})
    session.refresh(found)
    audit.record(session, action="adverse_event.assigned" if take else "adverse_event.released",
                 subject_type="adverse_event", subject_id=found.id, actor_type="staff", actor_id=actor_id,
                 data={"assignee_id": found.assignee_id, "from": current,
                       **({"assigned_by": actor_id} if target != actor_id else {})}, at=now)
    return found


def update_assessment(session: Session, case_id: str, *, actor_id: str, now: datetime,
                      seriousness: str | None = None, criteria: Mapping[str, bool] | None = None) -> list[str]:
    """A reviewer's seriousness assessment and minimum-criteria ticks; returns what changed."""
    found = get_case(session, case_id)
    criteria = dict(criteria or {})
    if seriousness is None and not criteria:
        raise InvalidInput("nothing to update: give a seriousness and/or criteria")
    if seriousness is not None and seriousness not in ASSESSED:
        raise InvalidInput(f"seriousness must be one of: {', '.join(ASSESSED)}")
    unknown = sorted(set(criteria) - set(CRITERIA))
    if unknown:
        raise InvalidInput(f"unknown criteria: {', '.join(unknown)}; criteria are {', '.join(CRITERIA)}")
    if any(not isinstance(v, bool) for v in criteria.values()):
        raise InvalidInput("each criterion is true or false")
    changed: list[str] = []
    if seriousness is not None and seriousness != found.seriousness:
        safety.classify_seriousness(session, found.id, seriousness=seriousness, actor_id=actor_id, now=now)
        changed.append("seriousness")
    flips = {name: value for name, value in criteria.items() if bool(getattr(found, f"has_{name}")) != value}
    if flips:
        for name, value in flips.items():
            setattr(found, f"has_{name}", value)
        found.updated_at = now
        session.flush()
        audit.record(session, action="adverse_event.criteria", subject_type="adverse_event", subject_id=found.id,
                     actor_type="staff", actor_id=actor_id,
                     data={"set": flips, "missing": found.missing_criteria}, at=now)
        changed.extend(f"criterion {n}" for n in flips)
    return changed


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_case(session: Session, case_id: str, *, staff_id: str, now: datetime) -> dict[str, Any]:
    """One case as a self-contained JSON document (the export is audited and in its own trail)."""
    found = get_case(session, case_id)
    conv = session.get(Conversation, found.conversation_id)
    assert conv is not None
    audit.record(session, action="adverse_event.exported", subject_type="adverse_event", subject_id=found.id,
                 actor_type="staff", actor_id=staff_id, data={"format": "json", "reference": found.reference},
                 at=now)
    clock = case_clock(found, now)
    card = hcp_card(session, conv, found.hcp_id or conv.hcp_id)
    return {
        "format": "hcp-concierge/adverse-event-case@1",
        "exported_at": now.isoformat(),
        "exported_by": staff_id,
        "case": {
            "id": found.id, "reference": found.reference, "kind": found.kind, "status": found.status,
            "seriousness": found.seriousness, "serious_terms": list(found.serious_terms or []),
            "products": list(found.products or []), "categories": list(found.categories or []),
            "ae_score": found.ae_score, "channel": found.channel, "legal_hold": found.legal_hold,
            "assignee_id": found.assignee_id, "assigned_at": _iso(found.assigned_at),
            "conversation_id": found.conversation_id, "hcp_id": found.hcp_id, "raw_text": found.raw_text,
            "missing_asked": found.missing_asked, "created_at": _iso(found.created_at),
            "updated_at": _iso(found.updated_at),
        },
        "day0_at": found.day0_at.isoformat(),
        "due_at": found.due_at.isoformat(),
        "clock": {"deadline_days": clock.deadline_days, "days_left": clock.days_left, "running": clock.running,
                  "overdue": clock.overdue, "due_soon": clock.due_soon},
        "criteria": {
            **{c.name: c.known for c in case_criteria(found)},
            "required": list(REQUIRED_CRITERIA.get(found.kind, REQUIRED_CRITERIA[AeKind.adverse_event])),
            "missing": found.missing_criteria, "complete": found.is_complete,
        },
        "reporter": {"hcp_id": card.hcp_id, "name": card.name, "specialty": card.specialty, "country": card.country,
                     "verification": card.verification, "channel": card.channel, "market": card.market},
        "source_messages": [
            {"id": s.id, "received_at": s.at.isoformat(), "linked_at": s.linked_at.isoformat(),
             "channel": s.channel, "direction": s.direction, "sender_type": s.sender_type, "body": s.body}
            for s in source_messages(session, found.id)],
        "audit_trail": [
            {"seq": e.seq, "at": e.at.isoformat(), "action": e.action, "actor_type": e.actor_type,
             "actor_id": e.actor_id, "data": e.data} for e in _trail(session, "adverse_event", found.id)],
    }
