"""WhatsApp channel tables: one conversation per number, sends, Twilio message parts, media.

``whatsapp_thread`` makes "find or create the conversation for this number" race-safe: its
primary key is the address, so two first messages from one phone arriving at once end up in
one conversation on every backend.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, UTCDateTime, new_id


class WhatsappThread(Base):
    __tablename__ = "whatsapp_thread"

    address: Mapped[str] = mapped_column(String(128), primary_key=True)  # "whatsapp:+15551234567"
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WhatsappSend(Base):
    """Channel-specific facts about one outbound message (absent for a plain reply)."""

    __tablename__ = "whatsapp_send"

    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    # Business-initiated messages name their purpose (template + consent purpose); replies don't.
    purpose: Mapped[str | None] = mapped_column(String(32))
    content_variables: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # Numbered quick replies offered in this message: [{"n": 1, "title": ..., "payload": ...}]
    options: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    template_sid: Mapped[str | None] = mapped_column(String(64))
    parts_total: Mapped[int] = mapped_column(Integer, default=0)
    parts_sent: Mapped[int] = mapped_column(Integer, default=0)
    # Set when a Twilio call may have gone through without an answer (timeout): the next
    # attempt looks the message up before sending again.
    uncertain_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_code: Mapped[str | None] = mapped_column(String(16))
    held_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WhatsappPart(Base):
    """One Twilio message (SM…): a long reply is several parts."""

    __tablename__ = "whatsapp_part"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    part_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WhatsappMedia(Base):
    """A reference to media the HCP sent (never the bytes: Twilio hosts them)."""

    __tablename__ = "whatsapp_media"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # media | location | contact
    url: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(128))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WhatsappInbound(Base):
    """One incoming-message webhook exactly as Twilio signed it, stored before the ack.

    The webhook writes this row and nothing else (one INSERT; a repeated ``MessageSid`` hits the
    unique key and changes nothing), then answers Twilio. The ingest worker (``ingest.py``) turns
    pending rows into conversation messages in ``id`` order — the order they were persisted — and
    marks them ``done`` in the same transaction, so a crash between the ack and that step loses
    nothing: the worker picks the row up when it starts.
    """

    __tablename__ = "whatsapp_inbound"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_sid: Mapped[str] = mapped_column(String(64), unique=True)
    from_address: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[list[list[str]]] = mapped_column(JSON)  # the form's (key, value) pairs, in order
    # A STOP (keyword or Twilio's OptOutType): the dispatcher treats the number as opted out from
    # the moment this row commits, before the worker has recorded the consent change.
    opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending | done | failed
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
