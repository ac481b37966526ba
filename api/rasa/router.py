"""POST /rasa/webhook — the action endpoint Rasa's ``endpoints.yml`` points at."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.audit import service as audit
from api.conversations.models import Conversation
from api.db import unit_of_work
from api.rasa.actions import REGISTRY
from api.rasa.actions.protocol import ActionCall, ActionContext, ActionRejected, ActionResponse
from api.state import AppState

log = logging.getLogger("concierge.actions")
router = APIRouter(tags=["rasa"])


@router.get("/rasa/actions")
def list_actions() -> list[dict[str, str]]:
    return [{"name": name} for name in sorted(REGISTRY)]


@router.post("/rasa/webhook")
async def run_action(request: Request, token: Annotated[str, Query()] = "") -> JSONResponse:
    state: AppState = request.app.state.concierge
    if not hmac.compare_digest(token.encode(), state.settings.action_token.encode()):
        return JSONResponse({"error": "invalid action token"}, status_code=403)
    try:
        call = ActionCall.model_validate(json.loads(await request.body()))
    except (ValueError, ValidationError) as exc:
        return JSONResponse({"error": f"malformed action call: {str(exc)[:300]}"}, status_code=400)
    action = REGISTRY.get(call.next_action)
    if action is None:
        return JSONResponse({"error": f"no action named {call.next_action!r}"}, status_code=404)

    def execute() -> ActionResponse:
        now = state.clock.now()
        with unit_of_work(state.session_factory) as session:
            conv = session.get(Conversation, call.sender_id)
            if conv is None:
                raise ActionRejected(call.next_action, "unknown conversation")
            ctx = ActionContext(session=session, settings=state.settings, conversation=conv,
                                tracker=call.tracker, now=now)
            result = action(ctx)
            audit.record(session, action="bot.action", subject_type="conversation", subject_id=conv.id,
                         actor_type="bot", data={"action": call.next_action,
                                                 "intent": ctx.latest_intent,
                                                 "message_id": ctx.message_id}, at=now)
            return ActionResponse(events=result.events, responses=result.responses)

    try:
        from starlette.concurrency import run_in_threadpool

        response = await run_in_threadpool(execute)
    except ActionRejected as exc:
        return JSONResponse({"action_name": exc.action_name, "error": exc.error}, status_code=400)
    return JSONResponse(response.model_dump())
