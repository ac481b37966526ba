"""Staff side of the live relay: the conversation event stream the inbox page listens to.

    GET /api/staff/conversations/{id}/events?after=<message id>   (rep, msl, medical_reviewer)
        text/event-stream: ``event: message`` {id, direction, sender_type, body, approval_code,
        content_id, content_version, buttons, created_at, withheld}; ``event: state`` {state,
        assigned_staff_id}; ``: keep-alive`` comments. Reps get AE / medical-inquiry content withheld.

Staff replies go through the inbox (``POST /api/staff/inbox/{handoff_id}/reply``); their delivery
publishes the hint that brings them to the HCP's stream.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.cursors import MessageCursor
from api.db import unit_of_work
from api.errors import NotFound
from api.relay import service
from api.relay.schemas import RelayState
from api.relay.service import Batch
from api.relay.stream import events, resume_cursor, sse_response
from api.safety import firewall
from api.staff import service as staff_service
from api.staff.auth import COOKIE, Staff
from api.staff.service import StaffIdentity
from api.state import app_state

router = APIRouter(tags=["relay"])

STREAM_ROLES = ("rep", "msl", "medical_reviewer")


@router.get("/api/staff/conversations/{conversation_id}/events")
async def conversation_events(
    conversation_id: str,
    request: Request,
    ident: Annotated[StaffIdentity, Staff(*STREAM_ROLES)],
    after: MessageCursor = 0,
) -> StreamingResponse:
    state = app_state(request)
    relay = state.live_relay()
    cursor = resume_cursor(request, after)
    medical_viewer = firewall.sees_medical_content(ident)
    token = request.cookies.get(COOKIE, "")

    def open_stream() -> None:
        with unit_of_work(state.session_factory) as session:
            service.streamable_conversation(session, conversation_id)
            service.record_stream_opened(session, conversation_id=conversation_id, staff_id=ident.id, after=cursor,
                                         medical_viewer=medical_viewer, now=state.clock.now())

    await run_in_threadpool(open_stream)  # 404 before any byte is streamed

    def load(after_id: int) -> Batch | None:
        with relay.read_sessions() as session:
            try:
                return service.staff_batch(session, conversation_id, after_id, medical_viewer=medical_viewer)
            except NotFound:
                return None

    async def read(after_id: int) -> Batch | None:
        return await relay.run(load, after_id)

    def peek() -> tuple[int, RelayState] | None:
        with relay.read_sessions() as session:
            return service.probe(session, conversation_id)

    async def probe() -> tuple[int, RelayState] | None:
        return await relay.run(peek)

    def check() -> bool:
        # Logged out, deactivated or given other roles since the stream opened: end it (the
        # browser reconnects and is judged afresh).
        with unit_of_work(state.session_factory) as session:
            now_ident = staff_service.identity_for_token(session, token, now=state.clock.now())
        return now_ident is not None and now_ident.id == ident.id and now_ident.roles == ident.roles

    async def still_allowed() -> bool:
        return await run_in_threadpool(check)

    def audit_medical(batch: Batch) -> None:
        with unit_of_work(state.session_factory) as session:
            service.record_medical_shown(session, conversation_id=conversation_id, staff_id=ident.id,
                                         message_ids=batch.medical_shown, now=state.clock.now())

    async def on_batch(batch: Batch) -> None:
        if batch.medical_shown:
            await run_in_threadpool(audit_medical, batch)

    return sse_response(events(relay, conversation_id, cursor, read, still_allowed, on_batch,
                               probe=probe, watch_state=True))
