"""action_out_of_scope: a polite refusal that counts as a failed turn (two in a row → a person)."""

from __future__ import annotations

from api.conversations import copy
from api.rasa.actions.protocol import ActionContext, ActionResult, text

NAME = "action_out_of_scope"

OUT_OF_SCOPE = (
    "I'm sorry, that's outside what I can help with here. I can answer questions about our medicines, "
    "help with samples and access, or connect you with a person."
)
OFFER_PERSON = (
    "I'm sorry, that's outside what I can help with here, and I don't want to keep you going round in "
    "circles. Would you like a person from our team to take over?"
)


def run(ctx: ActionContext) -> ActionResult:
    ctx.conversation.failed_turns += 1
    if ctx.conversation.failed_turns >= 2:
        person = copy.TALK_TO_PERSON.as_dict()
        return ActionResult(responses=[text(OFFER_PERSON, [person], turn_failed=True)])
    return ActionResult(responses=[text(OUT_OF_SCOPE, turn_failed=True)])
