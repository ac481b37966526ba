"""HCP verifications (admin): confirm or reject the registrations HCPs gave the bot."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.consoles.render import render
from api.db import unit_of_work
from api.errors import ConciergeError
from api.hcps import verification
from api.pipeline.delivery import deliver_after_commit
from api.staff.auth import Staff
from api.staff.service import StaffIdentity
from api.state import app_state

router = APIRouter()
Admin = Annotated[StaffIdentity, Staff("admin")]


def _page(request: Request, ident: StaffIdentity, *, status_code: int = 200, **extra: object) -> Response:
    with unit_of_work(app_state(request).session_factory) as session:
        pending = verification.list_pending(session)
    return render(request, "verifications.html", ident, status_code=status_code, pending=pending, **extra)


@router.get("/console/admin/verifications", response_class=HTMLResponse)
def verifications_page(request: Request, ident: Admin, done: str | None = None) -> Response:
    flash = {"verified": "Verified; the HCP has been told.", "rejected": "Rejected; the HCP has been told."}
    return _page(request, ident, flash=flash.get(done or ""))


@router.post("/console/admin/verifications/{hcp_id}")
def decide(request: Request, ident: Admin, hcp_id: str, decision: Annotated[str, Form()],
           reason: Annotated[str, Form(max_length=1000)] = "") -> Response:
    state = app_state(request)
    if decision not in ("verify", "reject"):
        return _page(request, ident, status_code=422, flash="Choose verify or reject.", flash_kind="error")
    conversation_id = None
    try:
        with unit_of_work(state.session_factory) as session:
            _hcp, told = verification.decide(session, hcp_id, approve=decision == "verify", staff_id=ident.id,
                                             reason=reason, now=state.clock.now())
            conversation_id = told.conversation_id if told else None
    except ConciergeError as exc:
        return _page(request, ident, status_code=exc.status_code, flash=exc.message, flash_kind="error")
    if conversation_id:
        deliver_after_commit(state, conversation_id)
    done = "verified" if decision == "verify" else "rejected"
    return RedirectResponse(f"/console/admin/verifications?done={done}", status_code=303)
