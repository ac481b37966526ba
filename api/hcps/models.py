from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, UTCDateTime, new_id


class VerificationStatus(StrEnum):
    collecting = "collecting"  # the bot is still asking for name, licence number and country
    pending = "pending"
    verified = "verified"
    rejected = "rejected"


class Hcp(Base):
    __tablename__ = "hcp"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(String(200))
    specialty: Mapped[str | None] = mapped_column(String(100))
    licence_id: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    verification_status: Mapped[str] = mapped_column(String(16), default=VerificationStatus.pending)
    territory: Mapped[str | None] = mapped_column(String(64))
    assigned_rep_id: Mapped[str | None] = mapped_column(String(32))
    assigned_msl_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set by ``concierge hcp erase``: personal data removed; the row stays as the pseudonym that
    # retained records (adverse events under legal hold, aggregates) point to.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChannelIdentity(Base):
    """(channel, address) → hcp; a WhatsApp number binds to one HCP only after verification."""

    __tablename__ = "channel_identity"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
