"""Conversations and their messages: the system of record for every word exchanged."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import (
    Channel,
    Conversation,
    ConversationState,
    Direction,
    InboxItem,
    InboxStatus,
    Message,
    MessageStatus,
    OutboxItem,
    OutboxStatus,
    SenderType,
)
from api.errors import Conflict, NotFound
from api.relay import notify as relay_notify


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_webchat(session: Session, *, now: datetime, market: str | None) -> tuple[Conversation, str]:
    """A new anonymous web chat conversation and the secret session id its page holds."""
    token = secrets.token_urlsafe(24)
    conv = Conversation(
        channel=Channel.webchat, state=ConversationState.bot, market=market, audience="hcp",
        failed_turns=0, created_at=now, session_token_hash=hash_token(token),
    )
    session.add(conv)
    session.flush()
    audit.record(session, action="conversation.created", subject_type="conversation",
                 subject_id=conv.id, actor_type="hcp", data={"channel": conv.channel}, at=now)
    return conv, token


def get(session: Session, conversation_id: str) -> Conversation:
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        raise NotFound("conversation not found")
    return conv


def get_by_session_token(session: Session, token: str, *, for_update: bool = False) -> Conversation:
    stmt = select(Conversation).where(Conversation.session_token_hash == hash_token(token))
    if for_update:
        stmt = stmt.with_for_update()
    conv = session.execute(stmt).scalar_one_or_none()
    if conv is None:
        raise NotFound("unknown chat session")
    return conv


@dataclass
class Persisted:
    message: Message
    inbox: InboxItem
    duplicate: bool


def persist_inbound(
    session: Session,
    conv: Conversation,
    *,
    text: str,
    now: datetime,
    payload: str | None = None,
    channel_message_id: str | None = None,
    sender_id: str | None = None,
    received_at: datetime | None = None,
    conflict_if_different: bool = False,
    conversation_locked: bool = False,
    id_scoped_to_conversation: bool = False,
) -> Persisted:
    """Store an inbound message and its inbox entry; a repeated channel id is not stored twice.

    ``conflict_if_different``: a repeated channel id whose text or payload differs from the stored
    message is refused (``Conflict``), never silently dropped — for client-chosen ids (web chat).

    ``received_at``: when the channel persisted the raw delivery (WhatsApp stores the webhook
    first and ingests it later); the message is dated then and the audit event says so.

    The conversation row is locked first, so within one conversation message ids follow commit
    order: the worker processes inbound messages in the order they are listed.
    ``conversation_locked``: the caller read ``conv`` with ``FOR UPDATE`` in this transaction already.
    ``id_scoped_to_conversation``: the channel id names its conversation (web chat: ``client_message_key``),
    so under the conversation's lock the look-up below is final — no other transaction can store the
    same id meanwhile — and the insert needs no savepoint to recover from losing that race.
    """
    if not conversation_locked:
        session.execute(select(Conversation.id).where(Conversation.id == conv.id).with_for_update())
    if channel_message_id is not None:
        existing = session.execute(
            select(Message).where(Message.channel == conv.channel,
                                  Message.channel_message_id == channel_message_id)
        ).scalar_one_or_none()
        if existing is not None:
            return _duplicate(session, existing, text, payload, conflict_if_different)
    msg = Message(
        conversation_id=conv.id, direction=Direction.inbound, sender_type=SenderType.hcp,
        sender_id=sender_id, channel=conv.channel, channel_message_id=channel_message_id,
        body=text, payload=payload, status=MessageStatus.received, created_at=received_at or now,
    )
    if channel_message_id is None or id_scoped_to_conversation:
        session.add(msg)  # nothing to race for (see above)
        session.flush()
    else:
        try:
            with session.begin_nested():
                session.add(msg)
                session.flush()
        except IntegrityError:
            # A concurrent delivery of the same channel id won the race: use its row.
            existing = session.execute(
                select(Message).where(Message.channel == conv.channel,
                                      Message.channel_message_id == channel_message_id)
            ).scalar_one()
            return _duplicate(session, existing, text, payload, conflict_if_different)
    inbox = InboxItem(message_id=msg.id, conversation_id=conv.id, status=InboxStatus.pending,
                      attempts=0, created_at=now)
    session.add(inbox)
    conv.last_inbound_at = received_at or now
    session.flush()
    data: dict[str, object] = {"conversation_id": conv.id, "channel": conv.channel, "chars": len(text),
                               "payload": payload}
    if received_at is not None:
        data["received_at"] = received_at.isoformat()
    audit.record(session, action="message.received", subject_type="message", subject_id=str(msg.id),
                 actor_type="hcp", actor_id=sender_id, data=data, at=now)
    relay_notify(session, conv.id)  # live streams look again once this commits
    return Persisted(msg, inbox, duplicate=False)


def _duplicate(session: Session, existing: Message, text: str, payload: str | None, conflict: bool) -> Persisted:
    if conflict and (existing.body != text or (existing.payload or None) != (payload or None)):
        raise Conflict("this client_message_id was already used for a different message; "
                       "use a new id for a new message")
    inbox = session.execute(select(InboxItem).where(InboxItem.message_id == existing.id)).scalar_one()
    return Persisted(existing, inbox, duplicate=True)


def add_outbound(
    session: Session,
    conv: Conversation,
    *,
    text: str,
    now: datetime,
    sender_type: str = SenderType.bot,
    sender_id: str | None = None,
    buttons: list[dict[str, str]] | None = None,
    content_id: str | None = None,
    content_version: int | None = None,
    approval_code: str | None = None,
    in_reply_to: int | None = None,
    sender_label: str | None = None,
) -> Message:
    """Queue a reply: the message row and its outbox entry are one transaction."""
    msg = Message(
        conversation_id=conv.id, direction=Direction.outbound, sender_type=sender_type,
        sender_id=sender_id, sender_label=sender_label, channel=conv.channel, body=text, buttons=buttons or [],
        status=MessageStatus.queued, content_id=content_id, content_version=content_version,
        approval_code=approval_code, in_reply_to=in_reply_to, created_at=now,
    )
    session.add(msg)
    session.flush()
    session.add(OutboxItem(
        message_id=msg.id, conversation_id=conv.id, channel=conv.channel, status=OutboxStatus.pending,
        idempotency_key=f"msg-{msg.id}", attempts=0, next_attempt_at=now, created_at=now,
    ))
    audit.record(session, action="message.queued", subject_type="message", subject_id=str(msg.id),
                 actor_type=sender_type, actor_id=sender_id,
                 data={"conversation_id": conv.id, "content_id": content_id,
                       "content_version": content_version, "approval_code": approval_code,
                       "in_reply_to": in_reply_to}, at=now)
    return msg


def list_after(session: Session, conv: Conversation, after: int) -> list[Message]:
    """Messages a participant can see: every inbound, and outbound once sent."""
    visible = (MessageStatus.sent, MessageStatus.delivered, MessageStatus.read,
               MessageStatus.received, MessageStatus.processed)
    return list(session.execute(
        select(Message).where(Message.conversation_id == conv.id, Message.id > after,
                              Message.status.in_(visible)).order_by(Message.id)
    ).scalars())


def replies_to(session: Session, message_id: int) -> list[Message]:
    return list(session.execute(
        select(Message).where(Message.in_reply_to == message_id, Message.direction == Direction.outbound)
        .order_by(Message.id)
    ).scalars())
