"""A whole conversation as a document a staff member may keep or print: the per-conversation
transcript of the Inbox roles (rep, MSL, medical reviewer).

Who may have it: whoever may open one of the conversation's handoffs in the Inbox (their team,
their territory, or they hold it — ``api.handoffs.service.get_for_staff``), and, for those who
read medical content, anyone when the conversation carries a medical inquiry. Safety staff read
conversations on the case page and in the case exports instead.

What it shows is exactly what the Inbox shows the same person: the messages come from
``api.handoffs.service.transcript`` (the live relay's firewall in ``api.safety.firewall``), so a
rep's copy carries a placeholder where the HCP reported an adverse event or asked Medical, and
where Medical answered; messages the safety screen has not finished are not in it yet. Every
transcript is audited (who, which conversation, how many messages, how many withheld); reading
medical content is audited by the Inbox's own rule as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation, Message, SenderType
from api.errors import ConciergeError, Forbidden, NotFound
from api.handoffs import service as handoffs
from api.handoffs.models import Handoff
from api.hcps.models import Hcp
from api.safety import firewall
from api.safety.models import MedicalInquiry
from api.staff.models import StaffUser
from api.staff.service import StaffIdentity


@dataclass(frozen=True)
class Line:
    id: int
    at: datetime
    direction: str
    sender: str
    body: str | None  # None: withheld from this reader
    withheld: bool
    approval_code: str | None


@dataclass(frozen=True)
class HandoffFact:
    reference: str
    target: str
    status: str
    claimed_by: str | None
    outcome: str | None
    created_at: datetime


@dataclass(frozen=True)
class Transcript:
    conversation: Conversation
    hcp_name: str | None
    hcp_specialty: str | None
    handoffs: list[HandoffFact]
    lines: list[Line]
    withheld: int
    medical_content_shown: bool
    generated_at: datetime
    generated_by: str

    @property
    def withheld_text(self) -> str:
        return firewall.WITHHELD_TEXT


def _conversation(session: Session, conversation_id: str) -> Conversation:
    conv = session.get(Conversation, conversation_id) if len(conversation_id) <= 64 else None
    if conv is None:
        raise NotFound("no such conversation")
    return conv


def check_access(session: Session, conv: Conversation, ident: StaffIdentity) -> None:
    """Raise Forbidden unless this staff member may read this conversation in the Inbox."""
    handoff_ids = session.execute(select(Handoff.id).where(Handoff.conversation_id == conv.id)
                                  .order_by(Handoff.created_at.desc())).scalars().all()
    for handoff_id in handoff_ids:
        try:
            handoffs.get_for_staff(session, handoff_id, ident)
            return
        except ConciergeError:
            continue
    if firewall.sees_medical_content(ident) and session.execute(
            select(MedicalInquiry.id).where(MedicalInquiry.conversation_id == conv.id).limit(1)).first():
        return
    raise Forbidden("this conversation has no handoff for your team or territory, so its transcript is not yours "
                    "to read")


def _staff_names(session: Session, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    return {row.id: row.name for row in session.execute(
        select(StaffUser.id, StaffUser.name).where(StaffUser.id.in_(ids)))}


def _sender(sender_type: str, staff_name: str | None) -> str:
    if sender_type == SenderType.staff:
        return staff_name or "Staff"
    return {"hcp": "HCP", "bot": "Assistant", "system": "System"}.get(sender_type, sender_type)


def build(session: Session, conversation_id: str, ident: StaffIdentity, *, now: datetime) -> Transcript:
    """The transcript as ``ident`` may read it; audited."""
    conv = _conversation(session, conversation_id)
    check_access(session, conv, ident)
    messages = handoffs.transcript(session, conv, ident, now=now)
    staff_ids = [m.id for m in messages if m.sender_type == SenderType.staff]
    senders: dict[int, str | None] = dict(session.execute(
        select(Message.id, Message.sender_id).where(Message.id.in_(staff_ids))).tuples().all()) if staff_ids else {}
    rows = list(session.execute(select(Handoff).where(Handoff.conversation_id == conv.id)
                                .order_by(Handoff.created_at, Handoff.id)).scalars())
    names = _staff_names(session, {i for i in [*senders.values(), *(h.claimed_by for h in rows)] if i})
    lines = [Line(m.id, m.created_at, m.direction, _sender(m.sender_type, names.get(senders.get(m.id) or "")),
                  m.body, m.withheld, m.approval_code) for m in messages]
    facts = [HandoffFact(h.reference, h.target, h.status, names.get(h.claimed_by or ""), h.outcome, h.created_at)
             for h in rows]
    hcp = session.get(Hcp, conv.hcp_id) if conv.hcp_id else None
    withheld = sum(1 for line in lines if line.withheld)
    shown = firewall.sees_medical_content(ident)
    audit.record(session, action="conversation.transcript_exported", subject_type="conversation",
                 subject_id=conv.id, actor_type="staff", actor_id=ident.id,
                 data={"format": "html", "messages": len(lines), "withheld": withheld,
                       "medical_content_shown": shown}, at=now)
    return Transcript(conv, hcp.name if hcp and hcp.erased_at is None else None, hcp.specialty if hcp else None,
                      facts, lines, withheld, shown, now, ident.name)
