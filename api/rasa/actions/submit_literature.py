"""action_submit_literature: the literature form is complete → a service request with its SLA."""

from __future__ import annotations

from api.rasa.actions.protocol import ActionContext, ActionResult
from api.rasa.actions.service_request_common import submit

NAME = "action_submit_literature"
SLOTS = ("literature_topic",)


def run(ctx: ActionContext) -> ActionResult:
    return submit(ctx, kind="literature", slots=SLOTS)
