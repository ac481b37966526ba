"""Service requests: one row per request an HCP made through the bot, with its SLA."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, UTCDateTime, new_id


class RequestKind(StrEnum):
    samples = "samples"
    patient_support = "patient_support"
    access = "access"                    # reimbursement / prior authorisation / formulary
    literature = "literature"
    meeting = "meeting"
    contact_update = "contact_update"


class RequestStatus(StrEnum):
    open = "open"
    in_progress = "in_progress"
    resolved = "resolved"
    cannot_fulfil = "cannot_fulfil"   # closed without doing it; ``outcome_reason`` says why
    cancelled = "cancelled"


OPEN_STATUSES = (RequestStatus.open, RequestStatus.in_progress)
CLOSED_STATUSES = (RequestStatus.resolved, RequestStatus.cannot_fulfil, RequestStatus.cancelled)


class RequestTeam(StrEnum):
    rep = "rep"
    msl = "msl"
    patient_support = "patient_support"
    market_access = "market_access"
    medical_information = "medical_information"
    customer_service = "customer_service"


class ServiceRequest(Base):
    __tablename__ = "service_request"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    reference: Mapped[str] = mapped_column(String(24), unique=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.open, index=True)
    team: Mapped[str] = mapped_column(String(24))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    product: Mapped[str | None] = mapped_column(String(64))
    # The form's answers, by slot name (free text the HCP typed; never medical content).
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sla_due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # When the request was closed (resolved or cannot fulfil): the SLA is met when this is on time.
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(ForeignKey("staff_user.id"))
    # Cannot fulfil: why, in the staff member's words (the HCP is told).
    outcome_reason: Mapped[str | None] = mapped_column(Text)


class ServiceRequestNote(Base):
    """A staff note on a request (internal: never sent to the HCP). Append-only."""

    __tablename__ = "service_request_note"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    service_request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), index=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff_user.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
