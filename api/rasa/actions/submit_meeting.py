"""action_submit_meeting: the meeting form is complete → a service request with its SLA."""

from __future__ import annotations

from api.rasa.actions.protocol import ActionContext, ActionResult
from api.rasa.actions.service_request_common import submit

NAME = "action_submit_meeting"
SLOTS = ("meeting_with", "preferred_times")


def run(ctx: ActionContext) -> ActionResult:
    who = str(ctx.slot("meeting_with") or "").lower()
    team = "msl" if "msl" in who or "liaison" in who or "medical" in who else "rep"
    return submit(ctx, kind="meeting", slots=SLOTS, team=team)
