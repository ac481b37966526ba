"""What a relay stream reads on each wake-up: messages after a cursor, as this viewer may see them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations import service as conversations
from api.conversations.models import Conversation, Message, MessageStatus
from api.errors import NotFound
from api.handoffs.models import Handoff
from api.relay.schemas import RelayButton, RelayMessage, RelayState
from api.safety import firewall

# The statuses ``conversations.list_after`` shows a participant.
VISIBLE = (MessageStatus.sent, MessageStatus.delivered, MessageStatus.read, MessageStatus.received,
           MessageStatus.processed)


@dataclass
class Batch:
    messages: list[RelayMessage]
    state: RelayState | None = None
    medical_shown: list[int] = field(default_factory=list)  # medical content sent to a medical viewer


def to_relay(m: Message, *, withheld: bool = False) -> RelayMessage:
    if withheld:
        return RelayMessage(id=m.id, direction=m.direction, sender_type=m.sender_type, body=firewall.WITHHELD_TEXT,
                            approval_code=None, content_id=None, content_version=None, buttons=[],
                            created_at=m.created_at.isoformat(), withheld=True)
    return RelayMessage(
        id=m.id, direction=m.direction, sender_type=m.sender_type, sender_label=m.sender_label, body=m.body,
        approval_code=m.approval_code,
        content_id=m.content_id, content_version=m.content_version,
        buttons=[RelayButton(title=str(b["title"]), payload=str(b["payload"])) for b in (m.buttons or [])],
        created_at=m.created_at.isoformat(), withheld=False,
    )


def streamable_conversation(session: Session, conversation_id: str) -> Conversation:
    """The conversation, if staff may stream it: only conversations that were handed to a human."""
    conv = session.get(Conversation, conversation_id)
    has_handoff = conv is not None and session.execute(
        select(Handoff.id).where(Handoff.conversation_id == conversation_id).limit(1)
    ).first() is not None
    if conv is None or not has_handoff:
        raise NotFound("no handed-off conversation with this id")
    return conv


def staff_batch(session: Session, conversation_id: str, after: int, *, medical_viewer: bool) -> Batch:
    """Messages after ``after`` for a staff viewer (reps get medical content withheld) and the state.

    The stream checked ``streamable_conversation`` when it opened (a handoff is never deleted).
    """
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        raise NotFound("conversation not found")
    visible = firewall.settled(session, conversations.list_after(session, conv, after))
    medical = firewall.medical_ids(session, conv.id, visible)
    withhold = set() if medical_viewer else medical
    return Batch(
        messages=[to_relay(m, withheld=m.id in withhold) for m in visible],
        state=RelayState(state=conv.state, assigned_staff_id=conv.assigned_staff_id),
        medical_shown=sorted(medical - withhold),
    )


def hcp_batch(session: Session, token: str, after: int) -> Batch:
    """The HCP's own conversation after ``after``: every visible message (same as the GET endpoint)."""
    conv = conversations.get_by_session_token(session, token)
    return Batch(messages=[to_relay(m) for m in conversations.list_after(session, conv, after)])


def probe(session: Session, conversation_id: str) -> tuple[int, RelayState] | None:
    """The cheap re-check a stream runs without a hint: the newest visible message id and the state.

    Two indexed lookups instead of a full read; the stream reads in full only when something is
    newer than what it sent. None: the conversation is gone.
    """
    row = session.execute(select(Conversation.state, Conversation.assigned_staff_id)
                          .where(Conversation.id == conversation_id)).first()
    if row is None:
        return None
    newest = session.execute(select(func.max(Message.id)).where(Message.conversation_id == conversation_id,
                                                                Message.status.in_(VISIBLE))).scalar()
    return int(newest or 0), RelayState(state=row[0], assigned_staff_id=row[1])


def record_stream_opened(session: Session, *, conversation_id: str, staff_id: str, after: int,
                         medical_viewer: bool, now: datetime) -> None:
    audit.record(session, action="relay.stream_opened", subject_type="conversation", subject_id=conversation_id,
                 actor_type="staff", actor_id=staff_id,
                 data={"after": after, "view": "medical" if medical_viewer else "commercial"}, at=now)


def record_medical_shown(session: Session, *, conversation_id: str, staff_id: str, message_ids: list[int],
                         now: datetime) -> None:
    """A medical viewer's stream carried AE / inquiry content: who read what, when."""
    audit.record(session, action="relay.medical_content_viewed", subject_type="conversation",
                 subject_id=conversation_id, actor_type="staff", actor_id=staff_id,
                 data={"message_ids": message_ids}, at=now)
