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
