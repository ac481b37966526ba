"""Which messages of a conversation a commercial viewer (a rep) must not read (COMPLIANCE.md firewall).

Withheld from reps — the inbox transcript's rule (``api.handoffs.service._medical_message_ids``: an
HCP message that carried an adverse event or a medical inquiry, the replies to it, a staff message
that delivered an inquiry's answer), and on top of it:
- any staff message from the reviewer of one of the conversation's inquiries, or from anyone holding
  the medical_reviewer or safety role (whatever Medical writes may reveal the question);
- an HCP message the safety screen could not finish on (its turn failed): unscreened means unknown.

Inbound messages the screen has not finished yet are not shown to anyone on the staff stream until
it has (``settled``): an event once sent cannot be recalled, so the decision waits for the screen.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.conversations.models import Direction, InboxItem, InboxStatus, Message, MessageStatus, SenderType
from api.handoffs import service as handoffs
from api.safety.models import MedicalInquiry
from api.staff.models import StaffRole, StaffUser
from api.staff.service import StaffIdentity

# Staff whose messages in a conversation are Medical's (an answer reveals the question).
MEDICAL_AUTHOR_ROLES = frozenset({StaffRole.medical_reviewer, StaffRole.safety})
WITHHELD_TEXT = f"[{handoffs.WITHHELD_TEXT}]"


def sees_medical(ident: StaffIdentity) -> bool:
    """The inbox's rule (api.handoffs.service): MSLs and medical reviewers do; anyone who is a rep never."""
    return handoffs.sees_medical_content(ident)


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
    if not messages:
        return set()
    inbound = [m.id for m in messages if m.direction == Direction.inbound]
    replied_to = [m.in_reply_to for m in messages if m.in_reply_to is not None]
    medical = handoffs._medical_message_ids(session, sorted(set(inbound) | set(replied_to)))
    out = {m.id for m in messages if m.id in medical}
    out |= {m.id for m in messages if m.direction == Direction.outbound and m.in_reply_to in medical}

    staff_senders = {m.sender_id for m in messages if m.sender_type == SenderType.staff and m.sender_id}
    if staff_senders:
        reviewers = set(session.execute(
            select(MedicalInquiry.reviewer_id).where(MedicalInquiry.conversation_id == conversation_id,
                                                     MedicalInquiry.reviewer_id.is_not(None))
        ).scalars())
        users = session.execute(select(StaffUser.id, StaffUser.roles)
                                .where(StaffUser.id.in_(sorted(staff_senders)))).all()
        medical_authors = reviewers | {uid for uid, roles in users if MEDICAL_AUTHOR_ROLES & set(roles or [])}
        out |= {m.id for m in messages if m.sender_type == SenderType.staff and m.sender_id in medical_authors}

    unscreened = [m.id for m in messages if m.direction == Direction.inbound and m.status == MessageStatus.received]
    if unscreened:
        out |= set(session.execute(
            select(InboxItem.message_id).where(InboxItem.message_id.in_(unscreened),
                                               InboxItem.status == InboxStatus.failed)
        ).scalars())
    return out
