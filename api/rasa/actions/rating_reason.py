"""action_rating_reason: why the last answer was not helpful."""

from __future__ import annotations

from api.errors import NotFound
from api.rasa.actions.protocol import ActionContext, ActionResult, text
from feedback import service as feedback

NAME = "action_rating_reason"

THANKS = "Thank you — noted. I can also pass your question to Medical Information or connect you with a person."
NOTHING_TO_RATE = "Thank you for the feedback — noted."
_WORDS = (("not_relevant", ("relevant", "different question", "off topic", "not what i asked")),
          ("incomplete", ("incomplete", "missing", "more detail", "not enough", "partial")),
          ("unclear", ("unclear", "confusing", "hard to understand", "too long", "complicated")))


def _reason(ctx: ActionContext) -> str:
    raw = ctx.entity("reason")
    if raw in feedback.RATING_REASONS:
        return raw
    low = ctx.latest_text.lower()
    for reason, words in _WORDS:
        if any(w in low for w in words):
            return reason
    return "other"


def run(ctx: ActionContext) -> ActionResult:
    try:
        row = feedback.set_rating_reason(ctx.session, ctx.conversation, reason=_reason(ctx),
                                         message_id=ctx.message_id, now=ctx.now)
    except NotFound:
        return ActionResult(responses=[text(NOTHING_TO_RATE)])
    buttons = [{"title": "Ask Medical Information", "payload": "/ask_medical_information"},
               {"title": "Talk to a person", "payload": "/request_human"}]
    return ActionResult(responses=[text(THANKS, buttons, rating=row.id, reason=row.reason)])
