"""action_submit_contact_update: the contact update form is complete → a service request with its SLA."""

from __future__ import annotations

from api.rasa.actions.protocol import ActionContext, ActionResult
from api.rasa.actions.service_request_common import submit

NAME = "action_submit_contact_update"
SLOTS = ("new_contact_details",)


def run(ctx: ActionContext) -> ActionResult:
    return submit(ctx, kind="contact_update", slots=SLOTS)
