"""The admin console (admin only): staff users, their roles and territory, activation, password resets,
and what auto-assignment needs of each person (capacity, languages, markets).

Every change goes through :mod:`api.staff.service`, which validates and audits it. A bad input
re-renders the page with the message and a 4xx status; nothing is changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from api.consoles.render import render
from api.db import unit_of_work
from api.errors import ConciergeError, InvalidInput
from api.handoffs import assign
from api.staff import service
from api.staff.auth import Staff
from api.staff.models import StaffRole, StaffUser
from api.staff.service import StaffIdentity
from api.state import app_state

router = APIRouter()
Admin = Annotated[StaffIdentity, Staff("admin")]
ROLES = [r.value for r in StaffRole]
DONE = {
    "created": "User created.",
    "updated": "Roles and territory saved.",
    "deactivated": "User deactivated and logged out everywhere.",
    "reactivated": "User reactivated.",
    "password": "Temporary password set; the user's sessions were ended and they choose their own at next login.",
    "assignment": "Capacity, languages and markets saved.",
}


def _user_view(u: StaffUser) -> dict[str, Any]:
    return {"id": u.id, "email": u.email, "name": u.name, "roles": sorted(u.roles), "territory": u.territory,
            "active": u.active, "available": u.available, "totp": bool(u.totp_secret),
            "created_at": u.created_at, "last_login_at": u.last_login_at, "presence": u.presence,
            "max_open": u.max_open, "languages": ", ".join(u.languages or []), "markets": ", ".join(u.markets or [])}


def _users_page(request: Request, ident: StaffIdentity, *, status_code: int = 200, form: dict[str, Any] | None = None,
                **extra: Any) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        users = [_user_view(u) for u in service.list_users(session)]
    return render(request, "admin.html", ident, status_code=status_code, users=users, roles=ROLES,
                  form=form or {"roles": []}, min_password=service.MIN_PASSWORD_LENGTH, **extra)


def _user_page(request: Request, ident: StaffIdentity, staff_id: str, *, status_code: int = 200,
               **extra: Any) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        user = _user_view(service.get(session, staff_id))
    return render(request, "admin_user.html", ident, status_code=status_code, user=user, roles=ROLES,
                  default_max_open=state.settings.assign_max_open,
                  is_self=staff_id == ident.id, min_password=service.MIN_PASSWORD_LENGTH, **extra)


def _back(staff_id: str | None, done: str) -> RedirectResponse:
    where = f"/console/admin/users/{staff_id}" if staff_id else "/console/admin"
    return RedirectResponse(f"{where}?done={done}", status_code=303)


@router.get("/console/admin", response_class=HTMLResponse)
def admin_home(request: Request, ident: Admin, done: str = "") -> Response:
    return _users_page(request, ident, flash=DONE.get(done))


@router.post("/console/admin/users", response_class=HTMLResponse)
def create_user(
    request: Request,
    ident: Admin,
    email: Annotated[str, Form(max_length=254)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    territory: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    roles: Annotated[list[str] | None, Form()] = None,
) -> Response:
    state = app_state(request)
    roles = roles or []
    try:
        with unit_of_work(state.session_factory) as session:
            # No password typed: the new colleague gets an invite link and chooses their own. A typed
            # one is temporary: it must be changed at the first login.
            user = service.create(session, email=email, password=password or None, roles=roles,
                                  name=name.strip() or None, territory=territory.strip() or None,
                                  now=state.clock.now(), actor_id=ident.id)
            staff_id = user.id
            token = None if password else service.invite(session, user, now=state.clock.now(), actor_id=ident.id)
    except ConciergeError as exc:
        return _users_page(request, ident, status_code=exc.status_code, flash=exc.message, flash_kind="error",
                           form={"email": email, "name": name, "territory": territory, "roles": roles})
    if token is None:
        return _back(staff_id, "created")
    return _user_page(request, ident, staff_id, flash="User created. Send them the invite link below.",
                      invite_link=_invite_link(request, token))


def _invite_link(request: Request, token: str) -> str:
    # Where the admin reaches the console is where the colleague will (behind a proxy: forwarded headers).
    return f"{str(request.base_url).rstrip('/')}/console/invite/{token}"


@router.post("/console/admin/users/{staff_id}/invite", response_class=HTMLResponse)
def reinvite(request: Request, ident: Admin, staff_id: str) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        user = service.get(session, staff_id)
        token = service.invite(session, user, now=state.clock.now(), actor_id=ident.id)
    return _user_page(request, ident, staff_id, flash="A new invite link: the old link and password stop working.",
                      invite_link=_invite_link(request, token))


@router.get("/console/admin/users/{staff_id}", response_class=HTMLResponse)
def user_page(request: Request, ident: Admin, staff_id: str, done: str = "") -> Response:
    return _user_page(request, ident, staff_id, flash=DONE.get(done))


def _change_user(request: Request, ident: StaffIdentity, staff_id: str, done: str,
                 change: Callable[[Session, StaffUser, datetime], object]) -> Response:
    """Apply ``change`` to one staff user in one transaction; a refusal re-renders their page with the
    reason (nothing changed), an unknown user is a 404; done: back to their page with ``done``'s flash."""
    state = app_state(request)
    try:
        with unit_of_work(state.session_factory) as session:
            change(session, service.get(session, staff_id), state.clock.now())
    except ConciergeError as exc:
        if exc.status_code == 404:
            raise
        return _user_page(request, ident, staff_id, status_code=exc.status_code, flash=exc.message,
                          flash_kind="error")
    return _back(staff_id, done)


@router.post("/console/admin/users/{staff_id}", response_class=HTMLResponse)
def update_user(
    request: Request,
    ident: Admin,
    staff_id: str,
    territory: Annotated[str, Form(max_length=64)] = "",
    roles: Annotated[list[str] | None, Form()] = None,
) -> Response:
    return _change_user(request, ident, staff_id, "updated", lambda session, user, now: service.update(
        session, user, roles=roles or [], territory=territory.strip(), now=now, actor_id=ident.id))


@router.post("/console/admin/users/{staff_id}/assignment", response_class=HTMLResponse)
def update_assignment(
    request: Request,
    ident: Admin,
    staff_id: str,
    max_open: Annotated[str, Form(max_length=8)] = "",
    languages: Annotated[str, Form(max_length=200)] = "",
    markets: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    def change(session: Session, user: StaffUser, now: datetime) -> None:
        capacity = max_open.strip()
        if capacity and not capacity.isdigit():
            raise InvalidInput(f"capacity must be a whole number of open conversations, not {capacity[:8]!r}")
        assign.set_profile(session, user, max_open=int(capacity) if capacity else None,
                           languages=languages.split(","), markets=markets.split(","), now=now, actor_id=ident.id)

    return _change_user(request, ident, staff_id, "assignment", change)


@router.post("/console/admin/users/{staff_id}/active", response_class=HTMLResponse)
def set_active(request: Request, ident: Admin, staff_id: str,
               active: Annotated[str, Form(pattern="^(true|false)$")]) -> Response:
    on = active == "true"
    return _change_user(request, ident, staff_id, "reactivated" if on else "deactivated",
                        lambda session, user, now: service.update(session, user, active=on, now=now,
                                                                  actor_id=ident.id))


@router.post("/console/admin/users/{staff_id}/password", response_class=HTMLResponse)
def reset_password(request: Request, ident: Admin, staff_id: str,
                   password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    return _change_user(request, ident, staff_id, "password",
                        lambda session, user, now: service.set_password(session, user, password, now=now,
                                                                        actor_id=ident.id))


@router.get("/api/staff/admin/users")
def users_json(request: Request, ident: Admin) -> JSONResponse:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        users = [_user_view(u) for u in service.list_users(session)]
    for u in users:
        for key in ("created_at", "last_login_at"):
            u[key] = u[key].isoformat() if u[key] else None
    return JSONResponse({"users": users})
