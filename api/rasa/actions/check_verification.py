"""action_check_verification: runs before the verification form starts.

A verified HCP who asks to verify again is told so at once (the form would otherwise ask the
three questions first); anyone else goes on to ``verification_form``. The action ends the turn
for a verified HCP with a follow-up ``action_listen``, so the form never starts.
"""

from __future__ import annotations

from api.hcps.models import Hcp, VerificationStatus
from api.rasa.actions.protocol import ActionContext, ActionResult
from api.rasa.actions.submit_verification import already_verified

NAME = "action_check_verification"


def run(ctx: ActionContext) -> ActionResult:
    conv = ctx.conversation
    hcp = ctx.session.get(Hcp, conv.hcp_id) if conv.hcp_id else None
    if hcp is None or hcp.verification_status != VerificationStatus.verified:
        return ActionResult()  # the rules go on to verification_form
    return ActionResult(responses=[already_verified(ctx, hcp, stage="before_form")],
                        events=[{"event": "followup", "name": "action_listen"}])
