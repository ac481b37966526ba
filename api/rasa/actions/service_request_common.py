"""Shared by the six service-request submit actions: confirmed slots → ``service_request`` row → reply."""

from __future__ import annotations

from typing import Any

from api.rasa.actions.protocol import ActionContext, ActionResult, slot_set, text
from api.requests import service as requests
from api.requests import slots as form_slots

# CSAT is asked when staff close the request (api.requests.desk), not at submission.

NOT_CONFIRMED = "I haven't sent anything yet: please confirm the summary first."


def submit(ctx: ActionContext, *, kind: str, slots: tuple[str, ...], team: str | None = None) -> ActionResult:
    # The form ends with the summary (``request_confirmed``): nothing is created without a Confirm.
    if ctx.slot(form_slots.CONFIRM_SLOT) != form_slots.CONFIRMED:
        return ActionResult(responses=[text(NOT_CONFIRMED)])
    details: dict[str, Any] = {name: ctx.slot(name) for name in slots}
    # The form validated every value; cleaned once more here so a product is only ever a products.yaml key
    # and a quantity a number, whichever way the slot was set.
    product = form_slots.parse_product(details["product"]) if details.get("product") else None
    if "product" in details:
        details["product"] = product
    if details.get("sample_quantity") is not None:
        details["sample_quantity"] = form_slots.parse_quantity(details["sample_quantity"])
    row = requests.create_request(ctx.session, ctx.conversation, kind=kind, details=details,
                                  product=product, message_id=ctx.message_id, now=ctx.now, team=team)
    responses = [text(requests.confirmation(row), service_request=row.reference)]
    # Empty the form's slots so the next request of the same kind asks again.
    events = ([slot_set(name, None) for name in slots]
              + [slot_set(form_slots.CONFIRM_SLOT, None), slot_set("requested_slot", None)])
    return ActionResult(responses=responses, events=events)
