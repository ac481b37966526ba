"""Staff who work in the consoles: users, their login sessions, and login attempts (for throttling)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false

from api.db import Base, UTCDateTime, new_id


class StaffRole(StrEnum):
    rep = "rep"
    msl = "msl"
    medical_reviewer = "medical_reviewer"
    safety = "safety"
    cx_analyst = "cx_analyst"
    content_admin = "content_admin"
    admin = "admin"


class Presence(StrEnum):
    """Whether a person is at their desk (auto-assignment offers handoffs only to ``online`` staff)."""

    online = "online"
    away = "away"
    offline = "offline"


class StaffUser(Base):
    __tablename__ = "staff_user"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    territory: Mapped[str | None] = mapped_column(String(64))
    # Base32 TOTP secret; set only once the user has confirmed a code from their authenticator.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Whether the user takes handoffs right now (the "nobody available" path looks at this).
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    # Auto-assignment (api.handoffs.assign): presence set in the Inbox console; capacity (None: the
    # CONCIERGE_ASSIGN_MAX_OPEN default); languages and markets served (None or empty: any).
    presence: Mapped[str] = mapped_column(String(16), default=Presence.offline, server_default=Presence.offline)
    max_open: Mapped[int | None] = mapped_column(Integer)
    languages: Mapped[list[str] | None] = mapped_column(JSON)
    markets: Mapped[list[str] | None] = mapped_column(JSON)
    last_offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A password an admin set (or none yet: an invite) must be replaced by the user's own before
    # they can use the consoles.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    invite_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    invite_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffSession(Base):
    """A console login. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "staff_session"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff_user.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    __tablename__ = "staff_login_attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    client: Mapped[str | None] = mapped_column(String(64), index=True)
    success: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
