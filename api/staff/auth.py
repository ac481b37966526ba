"""Who may use which route: every console/staff route declares its roles (deny by default).

``RoleGate`` is the one dependency that authenticates a staff request and checks its roles. The
app refuses to start if a route under a staff prefix has no gate (``check_routes_gated``), and
``tests/consoles/test_access_matrix.py`` walks every route × role.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from api.db import unit_of_work
from api.errors import ConciergeError, Forbidden, Unauthorized
from api.staff import service
from api.staff.errors import CsrfFailed
from api.staff.models import StaffRole
from api.state import app_state

COOKIE = "concierge_staff"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths that belong to staff. Anything under them must carry a RoleGate.
STAFF_PREFIXES = ("/console", "/api/staff", "/api/hcps", "/api/cx")
ALL_ROLES = frozenset(StaffRole)


class LoginRequired(Unauthorized):
    """Not logged in. HTML pages turn this into a redirect to the login page."""

    code = "login_required"

    def __init__(self, next_url: str) -> None:
        super().__init__("log in to continue")
        self.next_url = next_url


class PasswordChangeRequired(Forbidden):
    """Logged in with a temporary password: HTML pages go to the password page, APIs get 403."""

    code = "password_change_required"

    def __init__(self) -> None:
        super().__init__("choose your own password first (Account → Password)")


# What a user who must change their password can still reach.
PASSWORD_CHANGE_PATHS = ("/console/account/password", "/console/logout")
PASSWORD_PAGE = "/console/account/password"


def login_redirect_url(next_url: str) -> str:
    return "/console/login?next=" + quote(next_url, safe="")


def current_identity(request: Request) -> service.StaffIdentity | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    cached = getattr(request.state, "staff_identity", None)
    if cached is not None:
        ident: service.StaffIdentity = cached
        return ident
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        found = service.identity_for_token(session, token, now=state.clock.now())
    request.state.staff_identity = found
    return found


class RoleGate:
    """Dependency: the logged-in staff member, if they hold one of ``roles``.

    Unsafe methods (POST/PUT/PATCH/DELETE) must also carry the session's CSRF token, as the
    ``csrf_token`` form field or the ``X-CSRF-Token`` header.
    """

    def __init__(self, *roles: StaffRole | str) -> None:
        unknown = [r for r in roles if r not in StaffRole.__members__]
        if unknown or not roles:
            raise ValueError(f"RoleGate needs known roles, got {roles!r}")
        self.roles = frozenset(str(r) for r in roles)

    async def __call__(self, request: Request) -> service.StaffIdentity:
        ident = current_identity(request)
        if ident is None:
            raise LoginRequired(str(request.url.path) + ("?" + request.url.query if request.url.query else ""))
        if ident.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
            raise PasswordChangeRequired()
        if not ident.has_any(self.roles):
            raise Forbidden("your role does not give access to this page")
        if request.method not in SAFE_METHODS:
            await check_csrf(request, ident)
        return ident


async def check_csrf(request: Request, ident: service.StaffIdentity) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, ident.csrf_token):
        raise CsrfFailed("the form has expired or did not come from this site; reload the page and try again")


class PublicStaffRoute:
    """Marks a staff-prefixed route that needs no login (the login page itself)."""

    def __call__(self) -> None:
        return None


public_route = PublicStaffRoute()


def Staff(*roles: StaffRole | str) -> object:
    """``ident: Annotated[StaffIdentity, Staff("rep", "msl")]``."""
    return Depends(RoleGate(*roles))


AnyStaff = Annotated[service.StaffIdentity, Depends(RoleGate(*StaffRole))]


def declared_roles(route: BaseRoute) -> frozenset[str] | None:
    """The roles a route admits; ``frozenset()`` for an explicitly public route; None if undeclared."""
    if not isinstance(route, APIRoute):
        return None
    found: set[str] = set()
    gated = False
    for dep in _walk(route.dependant.dependencies):
        if isinstance(dep, RoleGate):
            found |= dep.roles
            gated = True
        elif isinstance(dep, PublicStaffRoute):
            return frozenset()
    return frozenset(found) if gated else None


def _walk(deps: Iterable[object]) -> Iterable[object]:
    for d in deps:
        call = getattr(d, "call", None)
        if call is not None:
            yield call
        yield from _walk(getattr(d, "dependencies", ()))


def is_staff_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in STAFF_PREFIXES)


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """Every FastAPI route of the app with its full path (routers included without prefixes too)."""
    found = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute):
            found.append((ctx.path or route.path, route))
    return found


def check_routes_gated(app: FastAPI) -> None:
    """Deny by default: refuse to build an app with an undeclared staff route."""
    missing = [path for path, route in api_routes(app) if is_staff_path(path) and declared_roles(route) is None]
    if missing:
        raise RuntimeError(f"staff routes without a RoleGate: {missing}")


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "text/html")


__all__ = ["AnyStaff", "ConciergeError", "LoginRequired", "RoleGate", "Staff", "check_routes_gated",
           "declared_roles", "login_redirect_url", "public_route"]
