"""action_answer_question: one approved item, verbatim, or an honest escalation."""

from __future__ import annotations

from api.content import recipient_for
from api.conversations import copy
from api.rasa.actions.protocol import ActionContext, ActionResult, slot_set, text
from api.rasa.actions.submit_verification import apply_audience, is_unverified_whatsapp

NAME = "action_answer_question"

RATING_BUTTONS = [
    {"title": "Helpful", "payload": "/rate_answer{\"helpful\": true}"},
    {"title": "Not helpful", "payload": "/rate_answer{\"helpful\": false}"},
    {"title": "Talk to someone", "payload": copy.TALK_TO_PERSON.payload},
]

NO_APPROVED_ANSWER = (
    "I don't have approved information that answers this, and I won't guess. "
    "I can pass your question to our Medical Information team, or connect you with a person."
)
FOR_VERIFIED_HCPS = (
    "We have approved information on this for verified healthcare professionals only. "
    "Once you are verified I can share it; verification takes a minute."
)
VERIFY_BUTTON = {"title": "Verify now", "payload": "/verify_identity"}
ASK_MEDICAL = {"title": "Ask Medical Information", "payload": "/ask_medical_information"}


def run(ctx: ActionContext) -> ActionResult:
    from knowledge.service import answer_question, get_knowledge_base

    apply_audience(ctx)
    kb = get_knowledge_base(ctx.settings.resolved_index_dir)
    recipient = recipient_for(ctx.session, ctx.conversation, ctx.settings.default_market)
    decision = answer_question(ctx.session, kb, ctx.latest_text, recipient, today=ctx.now.date(),
                               conversation_id=ctx.conversation.id, message_id=ctx.message_id)
    hint = ([text(copy.VERIFY_HINT, [VERIFY_BUTTON])]
            if ctx.conversation.hcp_id is None and is_unverified_whatsapp(ctx) else [])
    if decision.decision == "answer" and decision.content_id is not None and decision.version is not None:
        ref = {"content_id": decision.content_id, "version": decision.version, "answer_id": decision.answer_id}
        return ActionResult(responses=[{"custom": {"content_ref": ref, "buttons": RATING_BUTTONS}}, *hint],
                            events=[slot_set("last_answer_id", decision.answer_id)])
    person = copy.TALK_TO_PERSON.as_dict()
    if decision.needs_verification:
        # the gate withheld the answer only because this HCP is not verified yet: say so, offer verification
        return ActionResult(responses=[text(FOR_VERIFIED_HCPS, [VERIFY_BUTTON, ASK_MEDICAL, person],
                                            escalated=True)])
    return ActionResult(responses=[text(NO_APPROVED_ANSWER, [ASK_MEDICAL, person], escalated=True), *hint])
