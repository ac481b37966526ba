from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, UTCDateTime, new_id


class HandoffTarget(StrEnum):
    rep = "rep"
    msl = "msl"
    medical_information = "medical_information"


class HandoffStatus(StrEnum):
    queued = "queued"
    claimed = "claimed"
    handed_back = "handed_back"
    closed = "closed"


class Handoff(Base):
    __tablename__ = "handoff"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"))
    target: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=HandoffStatus.queued, index=True)
    sla_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The HCP's own rep/MSL when known: offered to them first, visible to the whole role.
    requested_staff_id: Mapped[str | None] = mapped_column(String(32), index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(32))
    # Out of hours / nobody available: how the HCP asked to be contacted instead (callback | email).
    contact_preference: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Auto-assignment (api.handoffs.assign): what the HCP needs, and who the handoff is offered to now.
    language: Mapped[str | None] = mapped_column(String(8))
    market: Mapped[str | None] = mapped_column(String(2))
    offered_to: Mapped[str | None] = mapped_column(String(32), index=True)
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    offer_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OfferOutcome(StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"
    withdrawn = "withdrawn"  # someone else claimed it, the person went away, or it left the queue
    released = "released"  # not an offer: the person held it and put it back; it is not offered to them again


class HandoffOffer(Base):
    """One offer of a handoff to one person, and how it ended (the round-robin's memory)."""

    __tablename__ = "handoff_offer"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoff.id"), index=True)
    staff_id: Mapped[str] = mapped_column(String(32), index=True)
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16), default=OfferOutcome.pending)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
