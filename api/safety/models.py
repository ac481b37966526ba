"""Safety tables: adverse events (and quality complaints), medical inquiries, consent history.

``adverse_event`` rows are never deleted (a database trigger refuses DELETE; updates of status,
seriousness and criteria are allowed) and are on legal hold by default. ``consent`` and
``adverse_event_message`` are append-only (no UPDATE, no DELETE).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, UTCDateTime, new_id


class AeKind(StrEnum):
    adverse_event = "adverse_event"
    quality_complaint = "quality_complaint"


class Seriousness(StrEnum):
    serious = "serious"
    non_serious = "non_serious"
    unknown = "unknown"


class AeStatus(StrEnum):
    new = "new"
    triaged = "triaged"
    submitted = "submitted"
    closed = "closed"


class InquiryStatus(StrEnum):
    open = "open"
    answered = "answered"
    closed = "closed"


class ConsentPurpose(StrEnum):
    service = "service"
    medical = "medical"
    marketing = "marketing"


class ConsentAction(StrEnum):
    opt_in = "opt_in"
    opt_out = "opt_out"


REQUIRED_CRITERIA: dict[str, tuple[str, ...]] = {
    AeKind.adverse_event: ("reporter", "patient", "product", "event"),
    # A quality complaint is about the product itself; a patient is only needed if one was harmed.
    AeKind.quality_complaint: ("reporter", "product", "event"),
}


class AdverseEvent(Base):
    """A possible adverse event or product quality complaint, captured from a message."""

    __tablename__ = "adverse_event"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    reference: Mapped[str] = mapped_column(String(24), unique=True)  # AE-2026-000123 / PQC-2026-000007
    kind: Mapped[str] = mapped_column(String(24), default=AeKind.adverse_event, index=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"))
    raw_text: Mapped[str] = mapped_column(Text)
    # Day 0: when the company first received the information (the first source message).
    day0_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    seriousness: Mapped[str] = mapped_column(String(16), default=Seriousness.unknown)
    serious_terms: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The four minimum criteria of a valid case.
    has_reporter: Mapped[bool] = mapped_column(Boolean, default=False)
    has_patient: Mapped[bool] = mapped_column(Boolean, default=False)
    has_product: Mapped[bool] = mapped_column(Boolean, default=False)
    has_event: Mapped[bool] = mapped_column(Boolean, default=False)
    products: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    ae_score: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default=AeStatus.new, index=True)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=True)
    missing_asked: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The safety staff member working the case (one at a time); None = in the team's queue.
    assignee_id: Mapped[str | None] = mapped_column(String(32), index=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # hcp: screened from an HCP message; staff: mentioned in a staff member's reply (api.safety.staff_screen)
    source: Mapped[str] = mapped_column(String(16), default="hcp", server_default="hcp")
    reported_by_staff_id: Mapped[str | None] = mapped_column(String(32))

    @property
    def missing_criteria(self) -> list[str]:
        """Minimum criteria still unknown (a quality complaint needs no patient)."""
        required = REQUIRED_CRITERIA.get(self.kind, REQUIRED_CRITERIA[AeKind.adverse_event])
        return [name for name in required if not getattr(self, f"has_{name}")]

    @property
    def is_complete(self) -> bool:
        return not self.missing_criteria


class AdverseEventMessage(Base):
    """Source messages of a case (append-only: the evidence stays linked)."""

    __tablename__ = "adverse_event_message"
    __table_args__ = (UniqueConstraint("adverse_event_id", "message_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    adverse_event_id: Mapped[str] = mapped_column(ForeignKey("adverse_event.id"), index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MedicalInquiry(Base):
    """An off-label or unsolicited medical question, answered by Medical; reps see metadata only."""

    __tablename__ = "medical_inquiry"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    reference: Mapped[str] = mapped_column(String(24), unique=True)  # MI-2026-000042
    text: Mapped[str] = mapped_column(Text)
    product: Mapped[str | None] = mapped_column(String(64))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=InquiryStatus.open, index=True)
    response: Mapped[str | None] = mapped_column(Text)
    reviewer_id: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"))
    market: Mapped[str | None] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The message that carried the answer to the HCP (free text or approved content).
    response_message_id: Mapped[int | None] = mapped_column(Integer)
    closed_by: Mapped[str | None] = mapped_column(String(32))
    close_reason: Mapped[str | None] = mapped_column(Text)

    def metadata_view(self) -> dict[str, Any]:
        """What a rep may see: that an inquiry exists, never its content."""
        return {
            "id": self.id, "reference": self.reference, "product": self.product,
            "status": self.status, "channel": self.channel, "created_at": self.created_at,
        }


class Consent(Base):
    """Append-only consent history per channel address and purpose; the latest row wins."""

    __tablename__ = "consent"
    __table_args__ = (Index("ix_consent_channel_address_purpose", "channel", "address", "purpose", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"))
    purpose: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class SafetyCounter(Base):
    """Per-prefix, per-year reference counters (AE-2026-…); the UPDATE serialises writers."""

    __tablename__ = "safety_counter"

    key: Mapped[str] = mapped_column(String(16), primary_key=True)  # e.g. "AE-2026"
    value: Mapped[int] = mapped_column(Integer, default=0)


class DuplicateStatus(StrEnum):
    possible = "possible"
    confirmed = "confirmed"
    rejected = "rejected"


class AdverseEventDuplicate(Base):
    """A new case that may report the same event as an earlier open one (``api.safety.duplicates``).

    Found automatically, decided by a safety reviewer (confirmed or rejected, once); neither case
    is changed or deleted by the link. No free text here: the reviewer's reason is a staff note.
    """

    __tablename__ = "adverse_event_duplicate"
    __table_args__ = (UniqueConstraint("case_id", "candidate_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The newer case, and the earlier open case it may duplicate.
    case_id: Mapped[str] = mapped_column(ForeignKey("adverse_event.id"), index=True)
    candidate_id: Mapped[str] = mapped_column(ForeignKey("adverse_event.id"), index=True)
    # Why they matched: {"same": ["hcp"|"conversation"], "products": [...], "events": [...], "days_apart": n}
    reasons: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=DuplicateStatus.possible, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReviewLabel(StrEnum):
    ae = "ae"
    not_ae = "not_ae"


class ReviewReason(StrEnum):
    flagged = "flagged"  # the screen opened (or linked) a case: every such message is reviewed
    random = "random"    # an unflagged message drawn at the sampling rate


class AeReviewSample(Base):
    """One inbound message in the blinded AE review queue (live recall / precision of the screen).

    ``reason``, ``screen_flagged`` and ``sample_rate`` are never shown to the reviewer, who sees the
    message text only and labels it AE / not AE. ``sample_rate`` is the probability with which the
    message was drawn (1.0 for flagged ones), so unflagged traffic can be re-weighted.
    """

    __tablename__ = "ae_review_sample"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), unique=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    screen_flagged: Mapped[bool] = mapped_column(Boolean)
    sample_rate: Mapped[float] = mapped_column(Float)
    sampled_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    label: Mapped[str | None] = mapped_column(String(16), index=True)
    reviewer_id: Mapped[str | None] = mapped_column(String(32))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
