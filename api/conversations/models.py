from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, UTCDateTime, new_id


class Channel(StrEnum):
    webchat = "webchat"
    whatsapp = "whatsapp"


class ConversationState(StrEnum):
    bot = "bot"
    queued = "queued"
    human = "human"
    closed = "closed"


class Direction(StrEnum):
    inbound = "in"
    outbound = "out"


class MessageStatus(StrEnum):
    received = "received"
    processed = "processed"
    queued = "queued"
    sent = "sent"
    delivered = "delivered"
    read = "read"
    failed = "failed"
    held = "held"


class SenderType(StrEnum):
    hcp = "hcp"
    bot = "bot"
    staff = "staff"
    system = "system"


class Conversation(Base):
    __tablename__ = "conversation"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(128), index=True)
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=ConversationState.bot)
    assigned_staff_id: Mapped[str | None] = mapped_column(String(32))
    market: Mapped[str | None] = mapped_column(String(2))
    audience: Mapped[str] = mapped_column(String(16), default="hcp")
    # Consecutive turns the bot could not help with; two in a row → offer a human.
    failed_turns: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Secret the web chat page holds; the session id alone does not grant access.
    session_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # WhatsApp verification intake the api runs for an unknown number: collecting | declined | done.
    verification_intake: Mapped[str | None] = mapped_column(String(16))


class Message(Base):
    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("channel", "channel_message_id"),
        Index("ix_message_conversation_id_id", "conversation_id", "id"),
    )

    # Autoincrement: the order messages were persisted in; web chat polls with ?after=<id>.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"))
    direction: Mapped[str] = mapped_column(String(3))
    sender_type: Mapped[str] = mapped_column(String(16))
    sender_id: Mapped[str | None] = mapped_column(String(64))
    # Who spoke, as the HCP sees it, for staff messages ("Medical Information · MI-2026-000042").
    sender_label: Mapped[str | None] = mapped_column(String(160))
    channel: Mapped[str] = mapped_column(String(16))
    channel_message_id: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    payload: Mapped[str | None] = mapped_column(Text)  # quick-reply payload the HCP clicked
    buttons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    content_id: Mapped[str | None] = mapped_column(String(64))
    content_version: Mapped[int | None] = mapped_column(Integer)
    approval_code: Mapped[str | None] = mapped_column(String(64))
    in_reply_to: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InboxStatus(StrEnum):
    pending = "pending"
    done = "done"
    failed = "failed"


class InboxItem(Base):
    """Inbound work not yet fully processed; replayed at start-up so nothing is lost."""

    __tablename__ = "inbox"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), unique=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=InboxStatus.pending, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The screening step's outcome, committed with what the screen found: a turn re-run after a
    # crash or an outage resumes from here instead of screening (and linking a case) twice.
    screened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    screen: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class OutboxStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    held = "held"
    dead = "dead"
    cancelled = "cancelled"


class OutboxItem(Base):
    """A send committed with the change that caused it, delivered by a channel sender."""

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), unique=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.pending, index=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConversationLease(Base):
    """Which process may run a conversation's turns (PostgreSQL, several processes; api.pipeline.lease).

    Coordination state, not a record: a row exists while a holder works on the conversation and is
    deleted when it lets go. No foreign key: a lease never blocks deleting a conversation, and the
    sweeper drops an expired row whatever it points at. Times are the database server's (``now()``),
    never a process clock, so processes with skewed clocks agree on when a lease has expired."""

    __tablename__ = "conversation_lease"

    conversation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # host:pid:random — the random part tells apart two lives of one pid (a restarted container)
    holder: Mapped[str] = mapped_column(String(128), index=True)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
