"""action_request_handoff: the HCP asked for a person (rep, MSL, Medical Information) or a team.

The team comes from the HCP's words (``api.handoffs.routing``): Medical Information is never
handed to a rep. A request to be phoned ("ask my rep to ring me") opens the handoff with the call
back already chosen (audited). Patient support is a service request, not a person in the chat: the
HCP gets a one-tap start of the patient-support request.
"""

from __future__ import annotations

from api.audit import service as audit
from api.conversations.models import Message
from api.handoffs import routing
from api.handoffs import service as handoffs
from api.handoffs.assign import assign_policy
from api.handoffs.hours import staff_hours
from api.handoffs.models import HandoffStatus, HandoffTarget
from api.rasa.actions.protocol import ActionContext, ActionResult, text

NAME = "action_request_handoff"

PATIENT_SUPPORT_TEXT = ("Patient support (enrolment, co-pay help, nurse training at home) is arranged by our "
                        "patient support team through a request: I can take the details now and they will "
                        "contact you.")
PATIENT_SUPPORT_BUTTON = {"title": "Start a patient support request", "payload": "/request_patient_support"}
CALLBACK_TEXT = ("Noted: {who} will call you back (reference {reference}). If we may not have your number, reply "
                 "here with the best number and time to call.")


def _words(ctx: ActionContext) -> str:
    """What the HCP typed (the stored message: Rasa may have been given an intent payload)."""
    if ctx.message_id is not None:
        msg = ctx.session.get(Message, ctx.message_id)
        if msg is not None and msg.body:
            return msg.body
    return ctx.latest_text


def run(ctx: ActionContext) -> ActionResult:
    words = _words(ctx)
    target = routing.target_for(words, ctx.entity("handoff_target") or ctx.slot("handoff_target"))
    if target == routing.PATIENT_SUPPORT:
        return ActionResult(responses=[text(PATIENT_SUPPORT_TEXT, [PATIENT_SUPPORT_BUTTON])])
    hours = staff_hours(ctx.settings)
    callback = routing.wants_callback(words)
    handoff = handoffs.open_handoff(ctx.session, ctx.conversation, target=target,
                                    reason="callback_request" if callback else "hcp_request", now=ctx.now,
                                    hours=hours,
                                    policy=assign_policy(ctx.settings))
    if callback and handoff.status == HandoffStatus.queued and handoff.contact_preference != "callback":
        handoff.contact_preference = "callback"
        audit.record(ctx.session, action="handoff.contact_preference", subject_type="handoff",
                     subject_id=handoff.id, actor_type="hcp", actor_id=ctx.conversation.hcp_id,
                     data={"via": "callback", "previous": None, "message_id": ctx.message_id,
                           "conversation_id": ctx.conversation.id}, at=ctx.now)
        who = handoffs.TARGET_WORDS[HandoffTarget(handoff.target)]
        return ActionResult(responses=[text(CALLBACK_TEXT.format(who=who, reference=handoff.reference),
                                            handoff=handoff.reference)])
    # Out of hours or with nobody free: an honest reply time, and a callback / email offered.
    draft = handoffs.reply_draft(ctx.session, handoff, now=ctx.now, hours=hours,
                                    policy=assign_policy(ctx.settings))
    return ActionResult(responses=[text(draft.text, [b.as_dict() for b in draft.buttons],
                                        handoff=handoff.reference)])
