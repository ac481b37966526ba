"""action_submit_access: the access form is complete → a service request with its SLA."""

from __future__ import annotations

from api.rasa.actions.protocol import ActionContext, ActionResult
from api.rasa.actions.service_request_common import submit

NAME = "action_submit_access"
SLOTS = ("product", "access_topic")


def run(ctx: ActionContext) -> ActionResult:
    return submit(ctx, kind="access", slots=SLOTS)
