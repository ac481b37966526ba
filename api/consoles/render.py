"""Server-rendered console pages: one Jinja2 environment, autoescaped, with the nav and CSRF token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.staff.models import StaffRole
from api.staff.service import StaffIdentity

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
templates = Jinja2Templates(directory=str(TEMPLATES))


@dataclass(frozen=True)
class ConsoleLink:
    path: str
    title: str
    roles: frozenset[str]


# The consoles, in nav order, and who sees each one (the routes enforce the same roles).
CONSOLES = (
    ConsoleLink("/console/inbox", "Inbox", frozenset({StaffRole.rep, StaffRole.msl, StaffRole.medical_reviewer})),
    ConsoleLink("/console/requests", "Requests",
                frozenset({StaffRole.rep, StaffRole.msl, StaffRole.medical_reviewer})),
    ConsoleLink("/console/medical", "Medical review", frozenset({StaffRole.medical_reviewer})),
    ConsoleLink("/console/safety", "Safety", frozenset({StaffRole.safety})),
    ConsoleLink("/console/content", "Content", frozenset({StaffRole.content_admin})),
    ConsoleLink("/console/cx", "CX", frozenset({StaffRole.cx_analyst})),
    ConsoleLink("/console/admin", "Admin", frozenset({StaffRole.admin})),
)


def links_for(ident: StaffIdentity | None) -> list[ConsoleLink]:
    if ident is None:
        return []
    return [c for c in CONSOLES if ident.has_any(c.roles)]


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%d %b %Y %H:%M UTC")


templates.env.filters["when"] = fmt_time


def render(request: Request, name: str, ident: StaffIdentity | None, status_code: int = 200,
           **context: Any) -> HTMLResponse:
    ctx = {"ident": ident, "nav": links_for(ident), "csrf_token": ident.csrf_token if ident else "",
           "path": request.url.path, **context}
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)
