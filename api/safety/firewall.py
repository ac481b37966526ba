"""Which messages of a conversation a commercial viewer (a rep) must not read (COMPLIANCE.md firewall).

The one home of the rule, used by the handoff summary, the inbox transcript, the profile card and
the live relay. Who reads medical content: MSLs and medical reviewers, never anyone who is a rep
(:func:`sees_medical_content`). Withheld from the others: :func:`medical_message_ids` (an HCP
message that carried an adverse event or a medical inquiry, the replies to it, a staff message
that delivered an inquiry's answer), and on the staff stream on top of it (:func:`medical_ids`):
- any staff message from the reviewer of one of the conversation's inquiries, or from anyone holding
  the medical_reviewer or safety role (whatever Medical writes may reveal the question);
- an HCP message the safety screen could not finish on (its turn failed): unscreened means unknown.

Inbound messages the screen has not finished yet are not shown to anyone on the staff stream until
it has (``settled``): an event once sent cannot be recalled, so the decision waits for the screen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.conversations.models import Direction, InboxItem, InboxStatus, Message, MessageStatus, SenderType
from api.safety.models import AdverseEventMessage, MedicalInquiry
from api.staff.models import StaffRole, StaffUser
from api.staff.service import StaffIdentity

# Staff whose messages in a conversation are Medical's (an answer reveals the question).
MEDICAL_AUTHOR_ROLES = frozenset({StaffRole.medical_reviewer, StaffRole.safety})
WITHHELD_NOTE = "a medical or safety message, routed to Medical/Safety; not shown"
WITHHELD_TEXT = f"[{WITHHELD_NOTE}]"


def sees_medical_content(ident: StaffIdentity) -> bool:
    """MSLs and medical reviewers read medical and safety messages; anyone who is a rep never does."""
    return StaffRole.rep not in ident.roles and bool(ident.roles & {StaffRole.msl, StaffRole.medical_reviewer})


def _linked_to_case(session: Session, message_ids: set[int]) -> set[int]:
    """Messages that an adverse event or a medical inquiry was captured from."""
    if not message_ids:
        return set()
    ae = session.execute(select(AdverseEventMessage.message_id)
                         .where(AdverseEventMessage.message_id.in_(message_ids))).scalars()
    mi = session.execute(select(MedicalInquiry.message_id)
                         .where(MedicalInquiry.message_id.in_(message_ids))).scalars()
    return {m for m in [*ae, *mi] if m is not None}


def medical_message_ids(session: Session, message_ids: list[int]) -> set[int]:
    """Messages a rep must not read (commercial/medical firewall), among ``message_ids``.

    An inbound message that carried an adverse event or a medical inquiry; the replies queued to
    such a message (they can echo it); and a staff message that delivered a medical inquiry's answer.
    """
    if not message_ids:
        return set()
    found = _linked_to_case(session, set(message_ids))
    outbound = session.execute(
        select(Message.id, Message.conversation_id, Message.sender_type, Message.body, Message.in_reply_to)
        .where(Message.id.in_(message_ids), Message.direction == Direction.outbound)
    ).all()
    replied_to = {r.in_reply_to for r in outbound if r.in_reply_to is not None}
    medical_sources = (replied_to & found) | _linked_to_case(session, replied_to - found)
    found |= {r.id for r in outbound if r.in_reply_to in medical_sources}
    staff_out = [r for r in outbound if r.sender_type == SenderType.staff]
    if staff_out:
        answers = {(a or "").strip() for a in session.execute(
            select(MedicalInquiry.response).where(
                MedicalInquiry.conversation_id.in_({r.conversation_id for r in staff_out}),
                MedicalInquiry.response.is_not(None))).scalars()}
        found |= {r.id for r in staff_out if r.body.strip() in answers}
    return found


def settled(session: Session, messages: Sequence[Message]) -> list[Message]:
    """The prefix of ``messages`` (id order) whose inbound messages the safety screen has finished.

    Stops at the first inbound message still waiting for its turn, so the stream's cursor never
    passes it: it is sent once screened, in order.
    """
    waiting = [m.id for m in messages if m.direction == Direction.inbound and m.status == MessageStatus.received]
    if not waiting:
        return list(messages)
    statuses = {message_id: status for message_id, status in session.execute(
        select(InboxItem.message_id, InboxItem.status).where(InboxItem.message_id.in_(waiting)))}
    out: list[Message] = []
    for m in messages:
        if m.id in statuses and statuses[m.id] == InboxStatus.pending:
            break
        out.append(m)
    return out


def medical_ids(session: Session, conversation_id: str, messages: Sequence[Message]) -> set[int]:
    """Ids among ``messages`` whose content is for Medical / Safety only."""
    return medical_ids_many(session, {conversation_id: messages})


def medical_ids_many(session: Session, by_conversation: Mapping[str, Sequence[Message]]) -> set[int]:
    """:func:`medical_ids` for several conversations at once (the inbox queue's previews): the same
    rule, in a fixed number of queries; each conversation's own reviewers count for it only."""
    messages = [m for rows in by_conversation.values() for m in rows]
    if not messages:
        return set()
    inbound = [m.id for m in messages if m.direction == Direction.inbound]
    replied_to = [m.in_reply_to for m in messages if m.in_reply_to is not None]
    medical = medical_message_ids(session, sorted(set(inbound) | set(replied_to)))
    out = {m.id for m in messages if m.id in medical}
    out |= {m.id for m in messages if m.direction == Direction.outbound and m.in_reply_to in medical}

    staff_senders = {m.sender_id for m in messages if m.sender_type == SenderType.staff and m.sender_id}
    if staff_senders:
        reviewers: dict[str, set[str]] = {}
        for conv_id, reviewer_id in session.execute(
            select(MedicalInquiry.conversation_id, MedicalInquiry.reviewer_id).where(
                MedicalInquiry.conversation_id.in_(sorted(by_conversation)), MedicalInquiry.reviewer_id.is_not(None))
        ).all():
            if reviewer_id is not None:
                reviewers.setdefault(conv_id, set()).add(reviewer_id)
        users = session.execute(select(StaffUser.id, StaffUser.roles)
                                .where(StaffUser.id.in_(sorted(staff_senders)))).all()
        medical_roles = {uid for uid, roles in users if MEDICAL_AUTHOR_ROLES & set(roles or [])}
        for conv_id, rows in by_conversation.items():
            authors = reviewers.get(conv_id, set()) | medical_roles
            out |= {m.id for m in rows if m.sender_type == SenderType.staff and m.sender_id in authors}

    unscreened = [m.id for m in messages if m.direction == Direction.inbound and m.status == MessageStatus.received]
    if unscreened:
        out |= set(session.execute(
            select(InboxItem.message_id).where(InboxItem.message_id.in_(unscreened),
                                               InboxItem.status == InboxStatus.failed)
        ).scalars())
    return out


def unscreened_ids(session: Session, message_ids: Sequence[int]) -> set[int]:
    """Inbound messages the safety screen has not finished yet (their inbox row is still pending and
    unscreened): nobody outside Medical/Safety may read them before it has."""
    if not message_ids:
        return set()
    return set(session.execute(select(InboxItem.message_id).where(
        InboxItem.message_id.in_(list(message_ids)), InboxItem.status == InboxStatus.pending,
        InboxItem.screened_at.is_(None))).scalars())
