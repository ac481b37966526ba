"""action_record_comment: free feedback ("you're sending me too much"), stored and acknowledged."""

from __future__ import annotations

from api.rasa.actions.protocol import ActionContext, ActionResult, text
from feedback import service as feedback

NAME = "action_record_comment"

THANKS = "Thank you for the feedback — I've passed it on to the team."
FREQUENCY = " I've also noted that you'd like to hear from us less often ({what})."


def run(ctx: ActionContext) -> ActionResult:
    comment = feedback.add_comment(ctx.session, ctx.conversation, text=ctx.latest_text,
                                   message_id=ctx.message_id, now=ctx.now)
    reply = THANKS
    frequency = feedback.parse_preferences(ctx.latest_text).get("frequency")
    if frequency is not None:
        feedback.set_preference(ctx.session, ctx.conversation, name="frequency", value=frequency,
                                message_id=ctx.message_id, now=ctx.now)
        reply += FREQUENCY.format(what=feedback.describe("frequency", frequency).split(": ", 1)[1])
    return ActionResult(responses=[text(reply, comment=comment.id, category=comment.category)])
