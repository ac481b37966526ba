"""Server-rendered console pages: one Jinja2 environment, autoescaped, with the nav and CSRF token."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Query, Request
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


def category_labels(codes: list[str] | None) -> str:
    """A case's categories (adverse reaction, special situations, quality complaint) in words."""
    from api.safety.screen import category_label

    return "; ".join(category_label(c) for c in codes or []) or "—"


templates.env.filters["categories"] = category_labels


T = TypeVar("T")

# A console list's page (1-based) and an API list's offset: lists are ordered by urgency, so page 1
# is what needs doing first, and nothing past it is out of reach.
PageNo = Annotated[int, Query(ge=1, le=100_000, description="1-based page of the list")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip (the previous response's next_offset)")]


@dataclass(frozen=True)
class Pager:
    path: str
    filters: Mapping[str, str]
    page: int
    size: int
    shown: int
    has_next: bool

    @property
    def first(self) -> int:
        return (self.page - 1) * self.size + 1 if self.shown else 0

    @property
    def last(self) -> int:
        return (self.page - 1) * self.size + self.shown

    @property
    def needed(self) -> bool:
        return self.page > 1 or self.has_next

    def url(self, page: int) -> str:
        query = {k: v for k, v in self.filters.items() if v}
        if page > 1:
            query["page"] = str(page)
        return f"{self.path}?{urlencode(query)}" if query else self.path


def fetch_page(fetch: Callable[[int, int], list[T]], *, offset: int, size: int) -> tuple[list[T], bool]:
    """``fetch(limit, offset)`` asked for one row more than a page: (the page, whether more follow)."""
    rows = fetch(size + 1, offset)
    return rows[:size], len(rows) > size


def page_of(request: Request, fetch: Callable[[int, int], list[T]], *, page: int, size: int,
            filters: Mapping[str, str]) -> tuple[list[T], Pager]:
    rows, more = fetch_page(fetch, offset=(page - 1) * size, size=size)
    return rows, Pager(request.url.path, dict(filters), page, size, len(rows), more)


def render(request: Request, name: str, ident: StaffIdentity | None, status_code: int = 200,
           **context: Any) -> HTMLResponse:
    ctx = {"ident": ident, "nav": links_for(ident), "csrf_token": ident.csrf_token if ident else "",
           "path": request.url.path, **context}
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)
