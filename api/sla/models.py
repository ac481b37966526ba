"""``sla_alert``: one row per breach (subject, kind, due time), raised once, delivered at most once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, UTCDateTime


class AlertKind(StrEnum):
    overdue = "overdue"      # past its SLA / reporting deadline and still not done
    due_soon = "due_soon"    # an adverse-event case within the warning period of its deadline


class SlaAlert(Base):
    __tablename__ = "sla_alert"
    __table_args__ = (UniqueConstraint("subject_type", "subject_id", "kind", "due_at", name="uq_sla_alert_breach"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_type: Mapped[str] = mapped_column(String(24))   # handoff | service_request | adverse_event
    subject_id: Mapped[str] = mapped_column(String(32), index=True)
    reference: Mapped[str] = mapped_column(String(24))
    kind: Mapped[str] = mapped_column(String(16))
    team: Mapped[str] = mapped_column(String(32))           # who should act: handoff target, request team, safety
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Webhook delivery (CONCIERGE_SLA_ALERT_WEBHOOKS): a short lease so two api processes never post the same alert.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
