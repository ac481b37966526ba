"""Staff accounts and console sessions: argon2id passwords, optional TOTP, throttled logins.

Services take a session and never commit; the request boundary does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.errors import Conflict, InvalidInput, NotFound
from api.staff.errors import LoginFailed, LoginThrottled, TotpRequired
from api.staff.models import LoginAttempt, StaffRole, StaffSession, StaffUser

# argon2id (the library default type) with its RFC 9106 "low memory" parameters.
_hasher = PasswordHasher()
# Computed once so an unknown email costs the same as a wrong password (no account probing by timing).
_DUMMY_HASH = _hasher.hash("not-a-real-password")

SESSION_TTL = timedelta(hours=12)
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_CLIENT = 20
SLOWDOWN_AFTER = 10
SLOWDOWN_INTERVAL = timedelta(seconds=3)
MIN_PASSWORD_LENGTH = 12
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class StaffIdentity:
    """Who is logged in, detached from any DB session (what route handlers receive)."""

    id: str
    email: str
    name: str
    roles: frozenset[str]
    territory: str | None
    session_id: str
    csrf_token: str
    # Until they set their own password (an invite, or one an admin set) only the password page works.
    must_change_password: bool = False

    def has_any(self, roles: frozenset[str]) -> bool:
        return bool(self.roles & roles)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_roles(roles: list[str]) -> list[str]:
    if not roles:
        raise InvalidInput("a staff user needs at least one role")
    unknown = [r for r in roles if r not in StaffRole.__members__]
    if unknown:
        raise InvalidInput(f"unknown role(s): {', '.join(unknown)}; roles are {', '.join(StaffRole)}")
    return sorted(set(roles))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD_LENGTH} characters")


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise InvalidInput(f"not an email address: {email!r}")
    return email


def create(session: Session, *, email: str, password: str | None, roles: list[str], name: str | None = None,
           territory: str | None = None, now: datetime, actor_id: str | None = None) -> StaffUser:
    """A staff user. ``password=None``: nobody knows a password yet (send them ``invite``); a
    password an admin chose must be changed at first login."""
    email = normalise_email(email)
    roles = _check_roles(roles)
    if password is not None:
        _check_password(password)
    if session.execute(select(StaffUser.id).where(StaffUser.email == email)).first() is not None:
        raise Conflict(f"a staff user with email {email} already exists")
    user = StaffUser(email=email, name=(name or email.split("@")[0]).strip()[:200], roles=roles,
                     password_hash=hash_password(password if password is not None else secrets.token_urlsafe(32)),
                     territory=territory or None, active=True, available=True, created_at=now,
                     must_change_password=actor_id is not None or password is None)
    session.add(user)
    session.flush()
    audit.record(session, action="staff.created", subject_type="staff_user", subject_id=user.id,
                 actor_type="staff" if actor_id else "system", actor_id=actor_id,
                 data={"roles": roles, "territory": territory}, at=now)
    return user


def get(session: Session, staff_id: str) -> StaffUser:
    user = session.get(StaffUser, staff_id)
    if user is None:
        raise NotFound("no such staff user")
    return user


def list_users(session: Session) -> list[StaffUser]:
    return list(session.execute(select(StaffUser).order_by(StaffUser.email)).scalars())


def list_available(session: Session, role: str) -> list[StaffUser]:
    """Active staff with the role who take handoffs now (JSON role lists are filtered in Python)."""
    rows = session.execute(select(StaffUser).where(StaffUser.active.is_(True), StaffUser.available.is_(True)))
    return [u for u in rows.scalars() if role in u.roles]


def update(session: Session, user: StaffUser, *, roles: list[str] | None = None, active: bool | None = None,
           territory: str | None = None, available: bool | None = None, now: datetime, actor_id: str) -> StaffUser:
    changes: dict[str, object] = {}
    if roles is not None:
        roles = _check_roles(roles)
    if active is not None and not active and user.id == actor_id:
        raise InvalidInput("you cannot deactivate your own account")
    _keep_an_admin(session, user, roles=roles, active=active)
    if roles is not None:
        user.roles = roles
        changes["roles"] = user.roles
    if territory is not None:
        user.territory = territory or None
        changes["territory"] = user.territory
    if available is not None:
        user.available = available
        changes["available"] = available
    if active is not None:
        user.active = active
        changes["active"] = active
        if not active:
            revoke_all(session, user.id, now=now)
    audit.record(session, action="staff.updated", subject_type="staff_user", subject_id=user.id,
                 actor_type="staff", actor_id=actor_id, data=changes, at=now)
    return user


def _keep_an_admin(session: Session, user: StaffUser, *, roles: list[str] | None, active: bool | None) -> None:
    """Refuse a change that would leave no active admin (nobody could manage staff any more)."""
    was_admin = user.active and StaffRole.admin in user.roles
    stays_admin = (user.active if active is None else active) and StaffRole.admin in (
        user.roles if roles is None else roles)
    if not was_admin or stays_admin:
        return
    # Lock the other active accounts so two admins demoting each other at once cannot both pass.
    others = session.execute(select(StaffUser).where(StaffUser.active.is_(True), StaffUser.id != user.id)
                             .with_for_update()).scalars()
    if not any(StaffRole.admin in u.roles for u in others):
        raise Conflict(f"{user.email} is the last active admin; make another user admin first")


def set_password(session: Session, user: StaffUser, password: str, *, now: datetime, actor_id: str | None) -> None:
    """Set a password. Set by someone else (an admin), it is temporary: the user must replace it at
    their next login. Every session of the user ends."""
    _check_password(password)
    user.password_hash = hash_password(password)
    user.must_change_password = actor_id is not None and actor_id != user.id
    user.invite_token_hash = None
    user.invite_expires_at = None
    revoke_all(session, user.id, now=now)
    audit.record(session, action="staff.password_set", subject_type="staff_user", subject_id=user.id,
                 actor_type="staff" if actor_id else "system", actor_id=actor_id,
                 data={"temporary": user.must_change_password}, at=now)


INVITE_TTL = timedelta(hours=72)


def invite(session: Session, user: StaffUser, *, now: datetime, actor_id: str) -> str:
    """A one-time link token (72 h) with which the user chooses their own password; only its hash is
    kept. A new invite replaces the previous one and the old password stops working."""
    token = secrets.token_urlsafe(32)
    user.invite_token_hash = hash_token(token)
    user.invite_expires_at = now + INVITE_TTL
    user.password_hash = hash_password(secrets.token_urlsafe(32))
    user.must_change_password = True
    revoke_all(session, user.id, now=now)
    audit.record(session, action="staff.invited", subject_type="staff_user", subject_id=user.id,
                 actor_type="staff", actor_id=actor_id, data={"expires_at": user.invite_expires_at.isoformat()}, at=now)
    return token


def invited_user(session: Session, token: str, *, now: datetime) -> StaffUser:
    user = session.execute(select(StaffUser).where(StaffUser.invite_token_hash == hash_token(token))
                           ).scalar_one_or_none() if token else None
    if user is None or not user.active:
        raise NotFound("this invite link is not valid (it may have been used already); ask your admin for a new one")
    if user.invite_expires_at is None or user.invite_expires_at <= now:
        raise InvalidInput("this invite link has expired; ask your admin for a new one")
    return user


def accept_invite(session: Session, token: str, password: str, *, now: datetime) -> StaffUser:
    user = invited_user(session, token, now=now)
    _check_password(password)
    user.password_hash = hash_password(password)
    user.invite_token_hash = None
    user.invite_expires_at = None
    user.must_change_password = False
    audit.record(session, action="staff.invite_accepted", subject_type="staff_user", subject_id=user.id,
                 actor_type="staff", actor_id=user.id, at=now)
    return user


def change_own_password(session: Session, user: StaffUser, *, current: str, new: str, now: datetime,
                        keep_session_id: str | None = None) -> None:
    """The user replaces their password (required after an admin set one); other sessions end."""
    try:
        _hasher.verify(user.password_hash, current)
    except (VerificationError, InvalidHashError):
        raise InvalidInput("the current password is not right") from None
    if new == current:
        raise InvalidInput("choose a password different from the current one")
    _check_password(new)
    user.password_hash = hash_password(new)
    user.must_change_password = False
    for row in session.execute(select(StaffSession).where(StaffSession.staff_id == user.id,
                                                          StaffSession.revoked_at.is_(None))).scalars():
        if row.id != keep_session_id:
            row.revoked_at = now
    audit.record(session, action="staff.password_changed", subject_type="staff_user", subject_id=user.id,
                 actor_type="staff", actor_id=user.id, at=now)


# --- TOTP ---------------------------------------------------------------------------------------

def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(user: StaffUser, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="HCP Concierge")


def _totp_ok(secret: str, code: str, now: datetime) -> bool:
    code = re.sub(r"\s", "", code or "")
    return bool(code.isdigit()) and pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1)


def enable_totp(session: Session, user: StaffUser, secret: str, code: str, *, now: datetime) -> None:
    if not _totp_ok(secret, code, now):
        raise InvalidInput("that code does not match; check your authenticator's clock and try again")
    user.totp_secret = secret
    audit.record(session, action="staff.totp_enabled", subject_type="staff_user", subject_id=user.id,
                 actor_type="staff", actor_id=user.id, at=now)


# --- login --------------------------------------------------------------------------------------

def _failures_since(session: Session, since: datetime, *, email: str | None = None, client: str | None = None,
                    reset_on_success: bool = True) -> int:
    """Failed attempts since ``since`` matching the email and/or client (and, when ``reset_on_success``,
    after their last successful log-in)."""
    match = [LoginAttempt.at >= since]
    if email is not None:
        match.append(LoginAttempt.email == email)
    if client is not None:
        match.append(LoginAttempt.client == client)
    q = select(func.count()).select_from(LoginAttempt).where(LoginAttempt.success.is_(False), *match)
    if reset_on_success:
        ok_at = session.execute(select(func.max(LoginAttempt.at)).where(LoginAttempt.success.is_(True),
                                                                       *match[1:])).scalar()
        if ok_at is not None:
            q = q.where(LoginAttempt.at > ok_at)
    return int(session.execute(q).scalar_one())


def throttle_reason(session: Session, email: str, client: str | None, now: datetime) -> str | None:
    """Why this attempt may not be checked now, or None.

    - This email from this client: locked for the window after MAX_FAILURES_PER_EMAIL failures (a
      guesser locks out nobody but themselves: the staff member elsewhere still logs in).
    - This client, any email: locked after MAX_FAILURES_PER_CLIENT failures (password spraying).
    - This email from anywhere, after SLOWDOWN_AFTER failures in the window (guessing from many
      addresses): at most one checked attempt every SLOWDOWN_INTERVAL — slowed, never locked.
    """
    since = now - THROTTLE_WINDOW
    if client is not None and _failures_since(session, since, email=email, client=client) >= MAX_FAILURES_PER_EMAIL:
        return "too many failed attempts for this account from here; wait 15 minutes or ask an admin to help"
    if client is not None and _failures_since(session, since, client=client,
                                              reset_on_success=False) >= MAX_FAILURES_PER_CLIENT:
        return "too many failed attempts from here; wait 15 minutes and try again"
    if _failures_since(session, since, email=email) >= SLOWDOWN_AFTER:
        last = session.execute(select(func.max(LoginAttempt.at)).where(LoginAttempt.email == email)).scalar()
        if last is not None and last > now - SLOWDOWN_INTERVAL:
            return "this account is receiving many failed log-ins; wait a few seconds and try again"
    return None


def is_throttled(session: Session, email: str, client: str | None, now: datetime) -> bool:
    return throttle_reason(session, email, client, now) is not None


def authenticate(session: Session, *, email: str, password: str, totp_code: str | None, client: str | None,
                 now: datetime) -> StaffUser:
    """Check the credentials; every attempt is recorded (throttling) and audited.

    A failed attempt is flushed before the error is raised: the caller commits even then,
    otherwise failures would never count towards the throttle.
    """
    email = email.strip().lower()[:254]
    reason = throttle_reason(session, email, client, now)
    if reason is not None:
        audit.record(session, action="staff.login_throttled", subject_type="staff_user", subject_id=None,
                     actor_type="anonymous", data={"email_hash": hash_token(email)[:16], "reason": reason}, at=now)
        raise LoginThrottled(reason)
    user = session.execute(select(StaffUser).where(StaffUser.email == email)).scalar_one_or_none()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        password_ok = user is not None
    except (VerificationError, InvalidHashError):
        password_ok = False
    if not password_ok or user is None or not user.active:
        _attempt(session, email, client, False, now, user)
        raise LoginFailed("wrong email or password")
    if user.totp_secret:
        if not totp_code:
            raise TotpRequired("enter the 6-digit code from your authenticator")
        if not _totp_ok(user.totp_secret, totp_code, now):
            _attempt(session, email, client, False, now, user)
            raise LoginFailed("wrong authenticator code")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    _attempt(session, email, client, True, now, user)
    return user


def _attempt(session: Session, email: str, client: str | None, success: bool, now: datetime,
             user: StaffUser | None) -> None:
    session.add(LoginAttempt(email=email, client=client, success=success, at=now))
    audit.record(session, action="staff.login" if success else "staff.login_failed", subject_type="staff_user",
                 subject_id=user.id if user else None, actor_type="staff" if success else "anonymous",
                 actor_id=user.id if success and user else None, at=now)
    session.flush()


def open_session(session: Session, user: StaffUser, *, now: datetime) -> tuple[StaffSession, str]:
    token = secrets.token_urlsafe(32)
    row = StaffSession(token_hash=hash_token(token), staff_id=user.id, csrf_token=secrets.token_urlsafe(32),
                       created_at=now, expires_at=now + SESSION_TTL)
    session.add(row)
    session.flush()
    return row, token


def identity_for_token(session: Session, token: str, *, now: datetime) -> StaffIdentity | None:
    row = session.execute(select(StaffSession).where(StaffSession.token_hash == hash_token(token))).scalar_one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    user = session.get(StaffUser, row.staff_id)
    if user is None or not user.active:
        return None
    return StaffIdentity(id=user.id, email=user.email, name=user.name, roles=frozenset(user.roles),
                         territory=user.territory, session_id=row.id, csrf_token=row.csrf_token,
                         must_change_password=bool(user.must_change_password))


def revoke(session: Session, session_id: str, *, now: datetime, actor_id: str) -> None:
    row = session.get(StaffSession, session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
        audit.record(session, action="staff.logout", subject_type="staff_user", subject_id=row.staff_id,
                     actor_type="staff", actor_id=actor_id, at=now)


def revoke_all(session: Session, staff_id: str, *, now: datetime) -> None:
    for row in session.execute(select(StaffSession).where(StaffSession.staff_id == staff_id,
                                                          StaffSession.revoked_at.is_(None))).scalars():
        row.revoked_at = now
