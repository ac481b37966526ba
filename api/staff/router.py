"""Login, logout, the console home page and the account page (TOTP, availability)."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.consoles.render import render
from api.db import unit_of_work
from api.errors import ConciergeError, InvalidInput
from api.handoffs import assign
from api.net import client_address
from api.staff import service
from api.staff.auth import COOKIE, AnyStaff, current_identity, public_route
from api.staff.errors import TotpRequired
from api.staff.models import Presence
from api.state import app_state

router = APIRouter()
Public = Depends(public_route)


def _safe_next(next_url: str | None) -> str:
    # Only same-site paths: "//evil.example" and "https://…" would be open redirects.
    if not next_url or not next_url.startswith("/") or next_url.startswith("//") or "\\" in next_url:
        return "/console"
    return next_url


# Login CSRF (double submit): the form carries the value of a cookie only this site can have set, so
# another site cannot log a browser into an account of its choosing.
LOGIN_CSRF_COOKIE = "concierge_login_csrf"


def _login_page(request: Request, status_code: int = 200, **context: Any) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "login.html", None, status_code=status_code, login_csrf=token, **context)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/console/login",
                        secure=app_state(request).settings.cookies_secure, max_age=2 * 3600)
    return response


@router.get("/console/login", response_class=HTMLResponse, dependencies=[Public])
def login_page(request: Request, next: str = "/console", welcome: str = "") -> Response:
    if current_identity(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    flash = "Your password is set: log in with it." if welcome == "1" else None
    return _login_page(request, next_url=_safe_next(next), flash=flash)


@router.post("/console/login", dependencies=[Public])
def login(
    request: Request,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=1024)],
    totp: Annotated[str | None, Form(max_length=16)] = None,
    next: Annotated[str, Form(max_length=2000)] = "/console",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    state = app_state(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf):
        return _login_page(request, status_code=403, error="This log-in form has expired; please log in again.",
                           email=email, next_url=_safe_next(next))
    client = client_address(request, state.trusted_proxies)
    error: ConciergeError | None = None
    token = ""
    # Commit even when the login fails: the failed attempt must count towards the throttle.
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        try:
            user = service.authenticate(session, email=email, password=password, totp_code=totp, client=client,
                                        now=now)
            _row, token = service.open_session(session, user, now=now)
        except ConciergeError as exc:
            error = exc
    if error is not None:
        return _login_page(request, status_code=error.status_code, error=error.message, email=email,
                           next_url=_safe_next(next), need_totp=isinstance(error, TotpRequired) or bool(totp))
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=state.settings.cookies_secure,
                        max_age=int(service.SESSION_TTL.total_seconds()), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/console/logout")
def logout(request: Request, ident: AnyStaff) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        service.revoke(session, ident.session_id, now=state.clock.now(), actor_id=ident.id)
        user = service.get(session, ident.id)
        if user.presence != Presence.offline:  # nobody is offered work after logging out
            assign.set_presence(session, user, Presence.offline, assign.assign_policy(state.settings),
                                state.clock.now(), actor_id=ident.id)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/console", response_class=HTMLResponse)
def home(request: Request, ident: AnyStaff, done: str = "") -> Response:
    return render(request, "home.html", ident, flash="Your new password is saved." if done == "password" else None)


@router.get("/console/account", response_class=HTMLResponse)
def account(request: Request, ident: AnyStaff) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        user = service.get(session, ident.id)
        secret = service.new_totp_secret()
        return render(request, "account.html", ident, totp_enabled=bool(user.totp_secret), secret=secret,
                      uri=service.totp_uri(user, secret), available=user.available)


@router.post("/console/account/totp", response_class=HTMLResponse)
def enable_totp(request: Request, ident: AnyStaff, secret: Annotated[str, Form(max_length=64)],
                code: Annotated[str, Form(max_length=16)]) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        user = service.get(session, ident.id)
        try:
            service.enable_totp(session, user, secret, code, now=state.clock.now())
        except ConciergeError as exc:
            return render(request, "account.html", ident, status_code=exc.status_code, flash=exc.message,
                          flash_kind="error", totp_enabled=False, secret=secret, uri=service.totp_uri(user, secret),
                          available=user.available)
        return render(request, "account.html", ident, flash="Two-factor authentication is on.", totp_enabled=True,
                      secret="", uri="", available=user.available)


@router.post("/console/account/availability")
def set_availability(request: Request, ident: AnyStaff, available: Annotated[str, Form()]) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        user = service.get(session, ident.id)
        service.update(session, user, available=available == "true", now=state.clock.now(), actor_id=ident.id)
    return RedirectResponse("/console/account", status_code=303)


# ---------------------------------------------------------------- own password, invites


@router.get("/console/account/password", response_class=HTMLResponse)
def password_page(request: Request, ident: AnyStaff) -> Response:
    return render(request, "password.html", ident, forced=ident.must_change_password,
                  min_password=service.MIN_PASSWORD_LENGTH)


@router.post("/console/account/password", response_class=HTMLResponse)
def change_password(request: Request, ident: AnyStaff, current: Annotated[str, Form(max_length=1024)] = "",
                    new: Annotated[str, Form(max_length=1024)] = "",
                    confirm: Annotated[str, Form(max_length=1024)] = "") -> Response:
    state = app_state(request)
    try:
        if new != confirm:
            raise InvalidInput("the two new passwords are not the same")
        with unit_of_work(state.session_factory) as session:
            service.change_own_password(session, service.get(session, ident.id), current=current, new=new,
                                        now=state.clock.now(), keep_session_id=ident.session_id)
    except ConciergeError as exc:
        return render(request, "password.html", ident, status_code=exc.status_code, flash=exc.message,
                      flash_kind="error", forced=ident.must_change_password,
                      min_password=service.MIN_PASSWORD_LENGTH)
    return RedirectResponse("/console?done=password", status_code=303)


@router.get("/console/invite/{token}", response_class=HTMLResponse, dependencies=[Public])
def invite_page(request: Request, token: str) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        user = service.invited_user(session, token[:128], now=state.clock.now())
        response = render(request, "invite.html", None, email=user.email, invitee=user.name,
                          min_password=service.MIN_PASSWORD_LENGTH)
    response.headers["cache-control"] = "no-store"
    response.headers["referrer-policy"] = "no-referrer"
    return response


@router.post("/console/invite/{token}", response_class=HTMLResponse, dependencies=[Public])
def accept_invite(request: Request, token: str, password: Annotated[str, Form(max_length=1024)] = "",
                  confirm: Annotated[str, Form(max_length=1024)] = "") -> Response:
    state = app_state(request)
    shown = {"email": "", "invitee": ""}
    try:
        with unit_of_work(state.session_factory) as session:
            user = service.invited_user(session, token[:128], now=state.clock.now())
            shown = {"email": user.email, "invitee": user.name}
            if password != confirm:
                raise InvalidInput("the two passwords are not the same")
            service.accept_invite(session, token[:128], password, now=state.clock.now())
    except ConciergeError as exc:
        if exc.status_code == 404:
            raise
        return render(request, "invite.html", None, status_code=exc.status_code, flash=exc.message,
                      flash_kind="error", min_password=service.MIN_PASSWORD_LENGTH, **shown)
    return RedirectResponse("/console/login?next=/console&welcome=1", status_code=303)
