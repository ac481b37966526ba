"""action_submit_patient_support: the patient support form is complete → a service request with its SLA."""

from __future__ import annotations

from api.rasa.actions.protocol import ActionContext, ActionResult
from api.rasa.actions.service_request_common import submit

NAME = "action_submit_patient_support"
SLOTS = ("product", "support_topic")


def run(ctx: ActionContext) -> ActionResult:
    return submit(ctx, kind="patient_support", slots=SLOTS)
