"""action_rate_answer: Helpful / Not helpful on the latest answer; not helpful asks why (optional)."""

from __future__ import annotations

from sqlalchemy import select

from api.rasa.actions.protocol import ActionContext, ActionResult, text
from feedback import service as feedback

NAME = "action_rate_answer"

THANKS = "Thank you for the feedback, it helps us improve."
ASK_REASON = "Thank you for telling us. What was wrong with the answer? (optional)"
REASON_BUTTONS = [
    {"title": "Not relevant", "payload": '/rating_reason{"reason": "not_relevant"}'},
    {"title": "Incomplete", "payload": '/rating_reason{"reason": "incomplete"}'},
    {"title": "Hard to understand", "payload": '/rating_reason{"reason": "unclear"}'},
]
_NEGATIVE = ("not", "n't", "useless", "wrong", "unhelpful", "no ")


def _helpful(ctx: ActionContext) -> bool:
    raw = ctx.entity("helpful")
    if raw is not None:
        return raw.strip().lower() in ("true", "yes", "1", "helpful")
    low = f" {ctx.latest_text.lower()} "
    return not any(word in low for word in _NEGATIVE)


def latest_answer_id(ctx: ActionContext) -> str | None:
    from knowledge.models import Answer

    return ctx.session.execute(
        select(Answer.id).where(Answer.conversation_id == ctx.conversation.id, Answer.decision == "answer")
        .order_by(Answer.created_at.desc()).limit(1)
    ).scalar_one_or_none()


def run(ctx: ActionContext) -> ActionResult:
    helpful = _helpful(ctx)
    answer_id = ctx.slot("last_answer_id") or latest_answer_id(ctx)
    row = feedback.rate_answer(ctx.session, ctx.conversation, answer_id=answer_id, helpful=helpful,
                               message_id=ctx.message_id, now=ctx.now)
    if helpful:
        return ActionResult(responses=[text(THANKS, rating=row.id)])
    return ActionResult(responses=[text(ASK_REASON, REASON_BUTTONS, rating=row.id)])
