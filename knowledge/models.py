"""Tables of the approved-content library and of every answer decision."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.clock import utcnow
from api.db import Base, UTCDateTime, new_id


class Decision(StrEnum):
    answer = "answer"
    escalate = "escalate"


class ContentItem(Base):
    """One approved-content item; its versions live in ``content_version``, one of them current."""

    __tablename__ = "content_item"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    current_version: Mapped[int] = mapped_column(Integer)
    product: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ContentVersion(Base):
    __tablename__ = "content_version"
    __table_args__ = (
        UniqueConstraint("content_id", "version"),
        Index("ix_content_version_current", "is_current", "content_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    content_id: Mapped[str] = mapped_column(ForeignKey("content_item.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)
    title: Mapped[str] = mapped_column(Text)
    product: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    audience: Mapped[list[str]] = mapped_column(JSON)
    markets: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    approval_code: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[date] = mapped_column(Date)
    expires_at: Mapped[date] = mapped_column(Date)
    questions: Mapped[list[str]] = mapped_column(JSON)
    body: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    loaded_by: Mapped[str] = mapped_column(String(64), default="system")
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class ContentProduct(Base):
    """A product from ``products.yaml``: its indications per market and its safety statement."""

    __tablename__ = "content_product"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    safety_statement: Mapped[str | None] = mapped_column(Text, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Answer(Base):
    """Every question the bot answered or declined: query, candidates, scores, decision, version."""

    __tablename__ = "answer"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    conversation_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    message_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    query: Mapped[str] = mapped_column(Text)
    market: Mapped[str] = mapped_column(String(2))
    audience: Mapped[str] = mapped_column(String(16))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    decision: Mapped[str] = mapped_column(String(16), index=True)
    content_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    content_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    score: Mapped[float] = mapped_column(Float)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    gated_count: Mapped[int] = mapped_column(Integer, default=0)


class StaffSnippet(Base):
    """A canned staff reply (one version of one ``code``), managed by content admins like content:
    drafted, approved by someone other than its author, valid for a date window, withdrawn.

    Staff wording, not MLR-approved content: once inserted in the reply box it goes out through
    the normal staff reply path (``knowledge.snippets``)."""

    __tablename__ = "staff_snippet"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)  # draft | approved | withdrawn | superseded
    market: Mapped[str | None] = mapped_column(String(2), nullable=True)  # None: every market
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date] = mapped_column(Date)  # exclusive, like content's expires_at
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    withdrawn_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
