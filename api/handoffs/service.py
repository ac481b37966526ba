"""Handoffs to a human: the bot side (create, summarise, queue)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations import copy
from api.conversations.drafts import ReplyDraft
from api.conversations.models import Conversation, ConversationState, Direction, Message
from api.handoffs.models import Handoff, HandoffStatus, HandoffTarget

# How long until a human must reply, per target (business policy; consoles show the clock).
SLA = {
    HandoffTarget.rep: timedelta(hours=4),
    HandoffTarget.msl: timedelta(hours=24),
    HandoffTarget.medical_information: timedelta(hours=24),
}

TARGET_WORDS = {
    HandoffTarget.rep: "a colleague from our customer team",
    HandoffTarget.msl: "a medical science liaison",
    HandoffTarget.medical_information: "our Medical Information team",
}


def _medical_message_ids(session: Session, message_ids: list[int]) -> set[int]:
    """Messages that carried an adverse event or a medical inquiry (content for Medical/PV only)."""
    from api.safety.models import AdverseEventMessage, MedicalInquiry

    if not message_ids:
        return set()
    ae = session.execute(select(AdverseEventMessage.message_id)
                         .where(AdverseEventMessage.message_id.in_(message_ids))).scalars()
    mi = session.execute(select(MedicalInquiry.message_id)
                         .where(MedicalInquiry.message_id.in_(message_ids))).scalars()
    return {m for m in [*ae, *mi] if m is not None}


def summarise(session: Session, conv: Conversation, *, target: str = HandoffTarget.rep, limit: int = 6) -> str:
    """One paragraph for the human: what the HCP said recently, oldest first.

    For a rep, messages that carried an adverse event or a medical question are not quoted
    (commercial/medical firewall): the rep learns only that such a message exists.
    """
    rows = session.execute(
        select(Message).where(Message.conversation_id == conv.id, Message.direction == Direction.inbound)
        .order_by(Message.id.desc()).limit(limit)
    ).scalars().all()
    withheld = _medical_message_ids(session, [m.id for m in rows]) if target == HandoffTarget.rep else set()
    said = []
    for m in reversed(rows):
        if m.id in withheld:
            said.append("[a medical or safety message, routed to Medical/Safety; not shown]")
        elif m.body.strip():
            said.append('"' + m.body.strip().replace("\n", " ")[:200] + '"')
    channel = "WhatsApp" if conv.channel == "whatsapp" else "web chat"
    if not said:
        return f"HCP on {channel} asked to talk to a person."
    return f"HCP on {channel} asked for a person. Recent messages: " + " | ".join(said)


def open_handoff(
    session: Session,
    conv: Conversation,
    *,
    target: str,
    reason: str,
    now: datetime,
) -> Handoff:
    """Queue the conversation for a human; an already-open handoff is reused."""
    existing = session.execute(
        select(Handoff).where(Handoff.conversation_id == conv.id,
                              Handoff.status.in_((HandoffStatus.queued, HandoffStatus.claimed)))
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    tgt = HandoffTarget(target) if target in HandoffTarget.__members__ else HandoffTarget.rep
    handoff = Handoff(
        reference=f"H-{secrets.token_hex(3).upper()}", conversation_id=conv.id, hcp_id=conv.hcp_id,
        target=tgt, reason=reason, summary=summarise(session, conv, target=tgt), status=HandoffStatus.queued,
        sla_due_at=now + SLA[tgt], created_at=now,
    )
    session.add(handoff)
    conv.state = ConversationState.queued
    session.flush()
    audit.record(session, action="handoff.queued", subject_type="handoff", subject_id=handoff.id,
                 actor_type="bot", data={"conversation_id": conv.id, "target": tgt, "reason": reason,
                                         "reference": handoff.reference}, at=now)
    return handoff


def acknowledgement(handoff: Handoff) -> str:
    due = handoff.sla_due_at.strftime("%H:%M UTC on %d %b")
    return copy.HANDOFF_QUEUED.format(who=TARGET_WORDS[HandoffTarget(handoff.target)],
                                      reference=handoff.reference, due=due)


def handoff_from_api(session: Session, conv: Conversation, msg: Message, now: datetime,
                     reason: str) -> ReplyDraft:
    """Used when Rasa is unavailable: the api itself honours 'talk to a person'."""
    handoff = open_handoff(session, conv, target=HandoffTarget.rep, reason=reason, now=now)
    return ReplyDraft(text=acknowledgement(handoff))
