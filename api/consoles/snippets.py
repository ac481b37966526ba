"""Canned staff snippets in the content console (content_admin): write a draft, approve someone
else's draft, withdraw, write a new version. Pages at /console/content/snippets…; every action is
audited by ``knowledge.snippets`` (``snippet.*``). A refused form is shown again with what was typed.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.consoles.content import ContentAdmin
from api.consoles.render import render
from api.db import unit_of_work
from api.errors import ConciergeError, InvalidInput
from api.handoffs.service import staff_name
from api.staff.service import StaffIdentity
from api.state import app_state
from knowledge import snippets

router = APIRouter()

DONE = {"drafted": "Draft saved. Another content admin approves it before staff can use it.",
        "approved": "Approved: staff can insert this version now; an earlier approved version is superseded.",
        "withdrawn": "Withdrawn: staff can no longer insert it."}


def _date(value: str, label: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"'{label}' is not a date (YYYY-MM-DD)") from None


def _form_draft(code: str, title: str, body: str, market: str, valid_from: str, valid_to: str) -> snippets.SnippetDraft:
    return snippets.SnippetDraft(code=code, title=title, body=body, market=market or None,
                                 valid_from=_date(valid_from, "valid from"), valid_to=_date(valid_to, "valid until"))


def _list_page(request: Request, ident: StaffIdentity, *, status_code: int = 200, form: dict[str, Any] | None = None,
               **extra: Any) -> Response:
    state = app_state(request)
    today = state.clock.now().date()
    with unit_of_work(state.session_factory) as session:
        rows = snippets.list_latest(session)
    form = form or {"code": "", "title": "", "body": "", "market": "", "valid_from": today.isoformat(),
                    "valid_to": (today + timedelta(days=365)).isoformat()}
    return render(request, "content_snippets.html", ident, status_code=status_code, rows=rows, form=form,
                  today=today, max_body=snippets.MAX_BODY, **extra)


def _code_page(request: Request, ident: StaffIdentity, code: str, *, status_code: int = 200,
               form: dict[str, Any] | None = None, **extra: Any) -> Response:
    state = app_state(request)
    today = state.clock.now().date()
    with unit_of_work(state.session_factory) as session:
        versions = snippets.list_versions(session, code)
        people = {v.created_by for v in versions} | {v.approved_by for v in versions if v.approved_by} | {
            v.withdrawn_by for v in versions if v.withdrawn_by}
        names = {p: staff_name(session, p) for p in people}
    if not versions:
        return _list_page(request, ident, status_code=404, flash=f"No snippet {code}.", flash_kind="error")
    latest = versions[0]
    form = form or {"code": latest.code, "title": latest.title, "body": latest.body, "market": latest.market or "",
                    "valid_from": today.isoformat(), "valid_to": latest.valid_to.isoformat()}
    return render(request, "content_snippet.html", ident, status_code=status_code, code=code, versions=versions,
                  form=form, today=today, me=ident.id, names=names, max_body=snippets.MAX_BODY, **extra)


@router.get("/console/content/snippets", response_class=HTMLResponse)
def snippets_page(request: Request, ident: ContentAdmin) -> Response:
    return _list_page(request, ident)


@router.get("/console/content/snippets/{code}", response_class=HTMLResponse)
def snippet_page(request: Request, ident: ContentAdmin, code: str, done: str = "") -> Response:
    return _code_page(request, ident, code[:64], flash=DONE.get(done))


@router.post("/console/content/snippets", response_class=HTMLResponse)
def create_snippet(request: Request, ident: ContentAdmin,
                   code: Annotated[str, Form(max_length=64)] = "", title: Annotated[str, Form(max_length=400)] = "",
                   body: Annotated[str, Form(max_length=20000)] = "", market: Annotated[str, Form(max_length=8)] = "",
                   valid_from: Annotated[str, Form(max_length=20)] = "",
                   valid_to: Annotated[str, Form(max_length=20)] = "",
                   new_version_of: Annotated[str, Form(max_length=64)] = "") -> Response:
    state = app_state(request)
    form = {"code": new_version_of or code, "title": title, "body": body, "market": market,
            "valid_from": valid_from, "valid_to": valid_to}
    try:
        draft = _form_draft(form["code"], title, body, market, valid_from, valid_to)
        with unit_of_work(state.session_factory) as session:
            if not new_version_of and snippets.list_versions(session, draft.code.strip().upper()):
                raise InvalidInput(f"{draft.code.strip().upper()} already exists; open it to write a new version")
            row = snippets.create(session, draft, actor=ident.id, now=state.clock.now())
            saved = row.code
    except ConciergeError as exc:
        kw: dict[str, Any] = {"status_code": exc.status_code, "form": form, "flash": f"Not saved: {exc.message}",
                              "flash_kind": "error"}
        return _code_page(request, ident, new_version_of, **kw) if new_version_of else _list_page(request, ident, **kw)
    return RedirectResponse(f"/console/content/snippets/{quote(saved, safe='')}?done=drafted", status_code=303)


def _act(request: Request, ident: StaffIdentity, code: str, snippet_id: str, action: str, reason: str = "") -> Response:
    state = app_state(request)
    try:
        with unit_of_work(state.session_factory) as session:
            if snippets.get(session, snippet_id).code != code:
                raise InvalidInput("that version belongs to another snippet")
            if action == "approve":
                snippets.approve(session, snippet_id, actor=ident.id, now=state.clock.now())
            else:
                snippets.withdraw(session, snippet_id, actor=ident.id, now=state.clock.now(), reason=reason)
    except ConciergeError as exc:
        return _code_page(request, ident, code, status_code=exc.status_code, flash=exc.message, flash_kind="error",
                          reason=reason)
    done = "approved" if action == "approve" else "withdrawn"
    return RedirectResponse(f"/console/content/snippets/{quote(code, safe='')}?done={done}", status_code=303)


@router.post("/console/content/snippets/{code}/{snippet_id}/approve", response_class=HTMLResponse)
def approve_snippet(request: Request, ident: ContentAdmin, code: str, snippet_id: str) -> Response:
    return _act(request, ident, code[:64], snippet_id[:32], "approve")


@router.post("/console/content/snippets/{code}/{snippet_id}/withdraw", response_class=HTMLResponse)
def withdraw_snippet(request: Request, ident: ContentAdmin, code: str, snippet_id: str,
                     reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    return _act(request, ident, code[:64], snippet_id[:32], "withdraw", reason)
