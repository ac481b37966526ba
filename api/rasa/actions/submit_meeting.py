"""action_submit_meeting: the meeting form is complete → a service request with its SLA."""

from __future__ import annotations

from api.handoffs import routing
from api.rasa.actions.protocol import ActionContext, ActionResult
from api.rasa.actions.service_request_common import submit

NAME = "action_submit_meeting"
SLOTS = ("meeting_with", "preferred_times")


def run(ctx: ActionContext) -> ActionResult:
    who = str(ctx.slot("meeting_with") or "").lower()
    # A meeting with anyone medical (an MSL by any name, "someone from your medical team") is the MSL team's.
    team = "msl" if routing.target_for(who) in ("msl", "medical_information") or "medical" in who else "rep"
    return submit(ctx, kind="meeting", slots=SLOTS, team=team)
