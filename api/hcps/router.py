"""Engagement profile API: ``GET /api/hcps/{id}/profile`` and ``GET /api/hcps/{id}/timeline``.

Reps, MSLs, medical reviewers and safety only (CX analysts get redacted aggregates on the CX
dashboard, never one person's file). What each role reads is decided in ``api.hcps.service``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.db import unit_of_work
from api.hcps import service
from api.hcps.schemas import ProfileRead, TimelineEventRead, TimelineRead
from api.staff.auth import Staff
from api.staff.service import StaffIdentity
from api.state import app_state
from feedback.fatigue import FatiguePolicy

router = APIRouter()
Reader = Annotated[StaffIdentity, Staff(*service.PROFILE_ROLES)]


@router.get("/api/hcps/{hcp_id}/profile", response_model=ProfileRead)
def get_profile(request: Request, hcp_id: str, ident: Reader) -> ProfileRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        found = service.profile(session, hcp_id, ident, now=state.clock.now(),
                                fatigue_policy=FatiguePolicy.from_settings(state.settings))
    return ProfileRead(**asdict(found))


@router.get("/api/hcps/{hcp_id}/timeline", response_model=TimelineRead)
def get_timeline(request: Request, hcp_id: str, ident: Reader,
                 limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
                 cursor: Annotated[str | None, Query(max_length=200)] = None) -> TimelineRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        page = service.timeline(session, hcp_id, ident, now=state.clock.now(), limit=limit, cursor=cursor)
    return TimelineRead(hcp_id=page.hcp_id, events=[TimelineEventRead(**e.as_dict()) for e in page.events],
                        next_cursor=page.next_cursor)
