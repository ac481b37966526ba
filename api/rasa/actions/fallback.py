"""action_concierge_fallback: the bot did not understand. Two in a row → offer a person."""

from __future__ import annotations

from api.conversations import copy
from api.rasa.actions.protocol import ActionContext, ActionResult, text

NAME = "action_concierge_fallback"

NOT_UNDERSTOOD = (
    "Sorry, I didn't quite get that. I can answer questions about our products with approved "
    "information, help with samples and access, or connect you with a person."
)
OFFER_PERSON = (
    "I'm sorry I couldn't help with that. Would you like a person from our team to take over?"
)


def run(ctx: ActionContext) -> ActionResult:
    ctx.conversation.failed_turns += 1
    person = copy.TALK_TO_PERSON.as_dict()
    if ctx.conversation.failed_turns >= 2:
        return ActionResult(responses=[text(OFFER_PERSON, [person], turn_failed=True)])
    return ActionResult(responses=[text(NOT_UNDERSTOOD, turn_failed=True)])
