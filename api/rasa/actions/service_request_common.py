"""Shared by the six service-request submit actions: slots → ``service_request`` row → reply."""

from __future__ import annotations

from typing import Any

from api.rasa.actions.protocol import ActionContext, ActionResult, slot_set, text
from api.requests import service as requests
from feedback import service as feedback

CSAT_QUESTION = "Before you go: how satisfied are you with how this was handled? 1 = poor, 5 = excellent."
CSAT_BUTTONS = [{"title": str(n), "payload": f'/give_score{{"score": "{n}"}}'} for n in range(1, 6)]


def submit(ctx: ActionContext, *, kind: str, slots: tuple[str, ...], team: str | None = None) -> ActionResult:
    details: dict[str, Any] = {name: ctx.slot(name) for name in slots}
    product = details.get("product")
    row = requests.create_request(ctx.session, ctx.conversation, kind=kind, details=details,
                                  product=str(product) if product else None, message_id=ctx.message_id,
                                  now=ctx.now, team=team)
    feedback.ask_survey(ctx.session, ctx.conversation, kind="csat", now=ctx.now, service_request_id=row.id)
    responses = [
        text(requests.confirmation(row), service_request=row.reference),
        text(CSAT_QUESTION, CSAT_BUTTONS),
    ]
    # Empty the form's slots so the next request of the same kind asks again.
    events = [slot_set(name, None) for name in slots] + [slot_set("requested_slot", None)]
    return ActionResult(responses=responses, events=events)
