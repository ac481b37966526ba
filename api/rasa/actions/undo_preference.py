"""action_undo_preference: the Undo under a preference acknowledgement puts the previous values back."""

from __future__ import annotations

from api.rasa.actions.protocol import ActionContext, ActionResult, text
from feedback import service as feedback

NAME = "action_undo_preference"

UNDONE = "Undone — your preferences are back as they were ({changes})."
NOTHING = "There is no preference change to undo."


def run(ctx: ActionContext) -> ActionResult:
    changes = feedback.undo_last_change(ctx.session, ctx.conversation, message_id=ctx.message_id, now=ctx.now)
    if not changes:
        return ActionResult(responses=[text(NOTHING)])
    described = ", ".join(feedback.describe(c.name, c.new_value) for c in changes)
    return ActionResult(responses=[text(UNDONE.format(changes=described), undone=sorted(c.name for c in changes))])
