"""action_submit_samples: the samples form is complete → a service request with its SLA."""

from __future__ import annotations

from api.rasa.actions.protocol import ActionContext, ActionResult
from api.rasa.actions.service_request_common import submit

NAME = "action_submit_samples"
SLOTS = ("product", "sample_quantity", "delivery_address")


def run(ctx: ActionContext) -> ActionResult:
    return submit(ctx, kind="samples", slots=SLOTS)
