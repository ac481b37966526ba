"""Shared by the six service-request submit actions: slots → ``service_request`` row → reply."""

from __future__ import annotations

from typing import Any

from api.rasa.actions.protocol import ActionContext, ActionResult, slot_set, text
from api.requests import service as requests

# CSAT is asked when staff close the request (api.requests.desk), not at submission.


def submit(ctx: ActionContext, *, kind: str, slots: tuple[str, ...], team: str | None = None) -> ActionResult:
    details: dict[str, Any] = {name: ctx.slot(name) for name in slots}
    product = details.get("product")
    row = requests.create_request(ctx.session, ctx.conversation, kind=kind, details=details,
                                  product=str(product) if product else None, message_id=ctx.message_id,
                                  now=ctx.now, team=team)
    responses = [text(requests.confirmation(row), service_request=row.reference)]
    # Empty the form's slots so the next request of the same kind asks again.
    events = [slot_set(name, None) for name in slots] + [slot_set("requested_slot", None)]
    return ActionResult(responses=responses, events=events)
