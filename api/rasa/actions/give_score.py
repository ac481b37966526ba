"""action_give_score: a CSAT (1-5) or NPS (0-10) score for the survey we asked last."""

from __future__ import annotations

import re

from api.errors import InvalidInput, NotFound
from api.rasa.actions.protocol import ActionContext, ActionResult, text
from feedback import service as feedback
from feedback.models import SurveyKind

NAME = "action_give_score"

NPS_QUESTION = ("One more, and we won't ask again for a while: how likely are you to recommend this "
                "service to a colleague? 0 = not at all, 10 = extremely likely.")
NPS_BUTTONS = [{"title": str(n), "payload": f'/give_score{{"score": "{n}"}}'} for n in range(0, 11)]
THANKS = "Thank you for the rating — it helps us improve."
NO_SURVEY = "Thanks. Is there anything else I can help with?"
OUT_OF_RANGE = "Sorry, that score is out of range: please answer with a number from {low} to {high}."


def _score(ctx: ActionContext) -> int | None:
    raw = ctx.entity("score") or ctx.latest_text
    m = re.search(r"\d{1,2}", str(raw))
    return int(m.group()) if m else None


def run(ctx: ActionContext) -> ActionResult:
    score = _score(ctx)
    pending = feedback.pending_survey(ctx.session, ctx.conversation)
    if score is None or pending is None:
        return ActionResult(responses=[text(NO_SURVEY)])
    try:
        row = feedback.record_score(ctx.session, ctx.conversation, score=score, message_id=ctx.message_id,
                                    now=ctx.now)
    except InvalidInput:
        low, high = feedback.SCORE_RANGE[SurveyKind(pending.kind)]
        return ActionResult(responses=[text(OUT_OF_RANGE.format(low=low, high=high))])
    except NotFound:
        return ActionResult(responses=[text(NO_SURVEY)])
    responses = [text(THANKS, survey=row.kind, score=score)]
    if row.kind == SurveyKind.csat and feedback.nps_due(ctx.session, ctx.conversation, now=ctx.now):
        feedback.ask_survey(ctx.session, ctx.conversation, kind="nps", now=ctx.now)
        responses.append(text(NPS_QUESTION, NPS_BUTTONS))
    return ActionResult(responses=responses)
