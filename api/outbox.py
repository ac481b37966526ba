"""Outbound delivery. Every send goes through the outbox and a ChannelSender.

Approved content is gated again at delivery: an item withdrawn or expired after it was
queued is never sent (COMPLIANCE: "Withdrawing or expiring an item stops it at once").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation, Message, MessageStatus, OutboxItem, OutboxStatus
from api.errors import ContentGated
from api.relay import notify as relay_notify

# (session, message, conversation, today) -> raises ContentGated when the content may not go out
SendGate = Callable[[Session, Message, Conversation, date], None]


class ChannelSender(Protocol):
    channel: str

    def send(self, session: Session, message: Message, conversation: Conversation) -> str | None:
        """Deliver one message; return the channel's id for it. Raise ChannelError to retry."""
        ...


class WebchatSender:
    """The web page pulls its messages, so delivery is making the message visible."""

    channel = "webchat"

    def send(self, session: Session, message: Message, conversation: Conversation) -> str | None:
        return None


def deliver_pending(
    session: Session,
    conversation_id: str,
    *,
    senders: Mapping[str, ChannelSender],
    gate: SendGate,
    now: datetime,
) -> list[Message]:
    """Deliver a conversation's pending outbox entries, in order. Returns what was sent."""
    # Entries queued in this transaction and not yet written are delivered as they are: their INSERT
    # then carries the final status (no INSERT of a pending row followed by its UPDATE).
    fresh = [o for o in session.new if isinstance(o, OutboxItem) and o.conversation_id == conversation_id
             and o.status == OutboxStatus.pending]
    with session.no_autoflush:
        stored = session.execute(
            select(OutboxItem).where(OutboxItem.conversation_id == conversation_id,
                                     OutboxItem.status == OutboxStatus.pending)
            .order_by(OutboxItem.message_id)
        ).scalars().all()
    items = [*stored, *sorted(fresh, key=lambda o: o.message_id)]  # the unwritten ones are the newest
    sent: list[Message] = []
    for item in items:
        msg = session.get(Message, item.message_id)
        conv = session.get(Conversation, item.conversation_id)
        assert msg is not None and conv is not None
        sender = senders.get(item.channel)
        if sender is None:
            continue  # another process (the channel's worker) delivers this one
        if msg.content_id is not None:
            try:
                gate(session, msg, conv, now.date())
            except ContentGated as exc:
                item.status = OutboxStatus.cancelled
                item.last_error = exc.message
                msg.status = MessageStatus.failed
                msg.error = f"content gated at send: {exc.message}"
                audit.record(session, action="content.gated_at_send", subject_type="message",
                             subject_id=str(msg.id), data={"content_id": msg.content_id,
                                                           "version": msg.content_version,
                                                           "reason": exc.message}, at=now)
                continue
        channel_id = sender.send(session, msg, conv)
        item.status = OutboxStatus.sent
        item.attempts += 1
        item.sent_at = now
        msg.status = MessageStatus.sent
        if channel_id:
            msg.channel_message_id = channel_id
        audit.record(session, action="message.sent", subject_type="message", subject_id=str(msg.id),
                     actor_type="system", data={"channel": item.channel,
                                                "content_id": msg.content_id,
                                                "content_version": msg.content_version}, at=now)
        sent.append(msg)
    session.flush()
    if items:
        relay_notify(session, conversation_id)  # live streams look again once this commits
    return sent
