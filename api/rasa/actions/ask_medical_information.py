"""action_ask_medical_information: pass the HCP's unanswered question to Medical Information.

Creates a ``medical_inquiry`` with the question and its context (the rep never sees it) and
tells the HCP how and when Medical will reply.
"""

from __future__ import annotations

from sqlalchemy import select

from api.conversations.models import Message
from api.handoffs import routing
from api.handoffs import service as handoffs
from api.handoffs.assign import assign_policy
from api.handoffs.hours import staff_hours
from api.handoffs.models import HandoffTarget
from api.rasa.actions.protocol import ActionContext, ActionResult, text
from api.safety import service as safety
from api.safety.screen import ScreenResult

NAME = "action_ask_medical_information"

# Business policy until it becomes a setting: Medical Information replies within 2 working days.
MEDICAL_REPLY_WORKING_DAYS = 2
CHANNEL_WORDS = {"whatsapp": "here on WhatsApp", "webchat": "in this chat (or by email if you share it)"}
REPLY = ("I've passed your question to our Medical Information team (reference {reference}). "
         "A medical colleague will reply {channel} within {days} working days. Your representative "
         "does not see medical questions.")
NOTHING_TO_ASK = ("Of course. Please type the question you would like Medical Information to answer, "
                  "and I'll pass it on.")


def _question_message(ctx: ActionContext) -> Message | None:
    """The question the library could not answer: the latest answer row's source message."""
    from knowledge.models import Answer

    answer = ctx.session.execute(
        select(Answer).where(Answer.conversation_id == ctx.conversation.id)
        .order_by(Answer.created_at.desc()).limit(1)
    ).scalar_one_or_none()
    if answer is not None and answer.message_id is not None:
        return ctx.session.get(Message, answer.message_id)
    # Typed request with the question in it ("ask medical whether X ...")
    if ctx.message_id is not None and len(ctx.latest_text.split()) > 6 and not ctx.latest_text.startswith("/"):
        return ctx.session.get(Message, ctx.message_id)
    return None


def _products(ctx: ActionContext) -> tuple[str, ...]:
    product = ctx.entity("product") or ctx.slot("product")
    return (str(product),) if product else ()


def _typed(ctx: ActionContext) -> str:
    if ctx.message_id is not None:
        msg = ctx.session.get(Message, ctx.message_id)
        if msg is not None and msg.body:
            return msg.body
    return ctx.latest_text


def run(ctx: ActionContext) -> ActionResult:
    typed = _typed(ctx)
    if not typed.startswith("/") and routing.wants_to_be_connected(typed) and "?" not in typed:
        # "Put me through to medical information": a person from Medical Information (never a rep).
        hours = staff_hours(ctx.settings)
        handoff = handoffs.open_handoff(ctx.session, ctx.conversation, target=HandoffTarget.medical_information,
                                        reason="hcp_request", now=ctx.now, hours=hours,
                                        policy=assign_policy(ctx.settings))
        draft = handoffs.reply_draft(ctx.session, handoff, now=ctx.now, hours=hours,
                                     policy=assign_policy(ctx.settings))
        return ActionResult(responses=[text(draft.text, [b.as_dict() for b in draft.buttons],
                                            handoff=handoff.reference)])
    message = _question_message(ctx)
    if message is None:
        return ActionResult(responses=[text(NOTHING_TO_ASK)])
    inquiry = safety.create_medical_inquiry(
        ctx.session, conversation=ctx.conversation, message=message,
        result=ScreenResult(products=_products(ctx), off_label_reasons=("unanswered",)), now=ctx.now)
    reply = REPLY.format(reference=inquiry.reference, days=MEDICAL_REPLY_WORKING_DAYS,
                         channel=CHANNEL_WORDS.get(ctx.conversation.channel, "on this channel"))
    return ActionResult(responses=[text(reply, medical_inquiry=inquiry.reference)])
