"""action_request_handoff: the HCP asked for a person (rep, MSL or Medical Information)."""

from __future__ import annotations

from api.handoffs import service as handoffs
from api.handoffs.hours import staff_hours
from api.handoffs.models import HandoffTarget
from api.rasa.actions.protocol import ActionContext, ActionResult, text

NAME = "action_request_handoff"

_TARGET_WORDS = {
    "msl": HandoffTarget.msl, "medical science liaison": HandoffTarget.msl,
    "medical": HandoffTarget.medical_information, "medical information": HandoffTarget.medical_information,
    "rep": HandoffTarget.rep, "representative": HandoffTarget.rep, "sales rep": HandoffTarget.rep,
}


def run(ctx: ActionContext) -> ActionResult:
    raw = (ctx.entity("handoff_target") or ctx.slot("handoff_target") or "rep").lower()
    target = _TARGET_WORDS.get(raw, HandoffTarget.rep)
    hours = staff_hours(ctx.settings)
    handoff = handoffs.open_handoff(ctx.session, ctx.conversation, target=target,
                                    reason="hcp_request", now=ctx.now, hours=hours)
    # Out of hours or with nobody free: an honest reply time, and a callback / email offered.
    draft = handoffs.reply_draft(ctx.session, handoff, now=ctx.now, hours=hours)
    return ActionResult(responses=[text(draft.text, [b.as_dict() for b in draft.buttons],
                                        handoff=handoff.reference)])
