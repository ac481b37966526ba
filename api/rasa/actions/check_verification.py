"""action_check_verification: runs before the verification form starts.

A verified HCP who asks to verify again is told so at once (the form would otherwise ask the
three questions first); anyone else goes on to ``verification_form``. The action ends the turn
for a verified HCP with a follow-up ``action_listen``, so the form never starts.
"""

from __future__ import annotations

from api.audit import service as audit
from api.hcps.models import Hcp, VerificationStatus
from api.rasa.actions.protocol import ActionContext, ActionResult, text
from api.rasa.actions.submit_verification import ALREADY_VERIFIED, apply_audience

NAME = "action_check_verification"


def run(ctx: ActionContext) -> ActionResult:
    conv = ctx.conversation
    hcp = ctx.session.get(Hcp, conv.hcp_id) if conv.hcp_id else None
    if hcp is None or hcp.verification_status != VerificationStatus.verified:
        return ActionResult()  # the rules go on to verification_form
    audit.record(ctx.session, action="hcp.verification_repeated", subject_type="hcp", subject_id=hcp.id,
                 actor_type="hcp", data={"conversation_id": conv.id, "message_id": ctx.message_id,
                                         "stage": "before_form"}, at=ctx.now)
    apply_audience(ctx)
    return ActionResult(responses=[text(ALREADY_VERIFIED.format(name=hcp.name or "doctor"), verification="verified")],
                        events=[{"event": "followup", "name": "action_listen"}])
