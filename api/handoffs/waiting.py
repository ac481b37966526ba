"""While an HCP waits for a person: the bot keeps answering, the request can be withdrawn, and the
HCP always knows where it stands.

A queued handoff (nobody has taken it yet) no longer silences the conversation: each message is
relayed (the person who takes it reads it) and also answered by the bot; a message the bot could
not answer is acknowledged with the handoff's reference and when to expect a person. "Cancel my
request" (typed, or the Cancel button's payload) closes the handoff as ``cancelled_by_hcp`` and
gives the conversation back to the bot. Once a person has taken the conversation, messages go to
that person only (relay), as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.drafts import Button, ReplyDraft
from api.conversations.models import Conversation, ConversationState, Message
from api.handoffs.assign import withdraw as withdraw_offer
from api.handoffs.hours import DEFAULT_HOURS, StaffHours
from api.handoffs.models import Handoff, HandoffStatus, HandoffTarget
from api.handoffs.service import TARGET_WORDS, open_handoff_for
from api.relay.hooks import notify

CANCEL_PAYLOAD = "/cancel_handoff"
CANCEL_BUTTON = Button("Cancel my request", CANCEL_PAYLOAD)
CANCELLED_OUTCOME = "cancelled_by_hcp"

# Whole short messages that withdraw the request (not "cancel my Cardiovex order", which is a question).
_CANCEL = re.compile(
    r"^\s*(?:please\s+)?(?:cancel(?:\s+(?:it|that|my|the|this))?(?:\s+(?:request|handoff|call\s*back|callback))?"
    r"|never\s*mind|nevermind|no\s+longer\s+needed|i\s+no\s+longer\s+need\s+(?:a\s+person|anyone|help)"
    r"|(?:take\s+me\s+)?back\s+to\s+the\s+(?:bot|assistant))"
    r"\s*(?:please|thanks|thank\s+you)?\s*[.!]*\s*$", re.IGNORECASE)

STILL_WAITING = ("Your message is saved and {who} will see it when they join (reference {reference}, "
                 "expected by {due}). Meanwhile I can still answer questions and take requests.")
STILL_WAITING_SHORT = "Still waiting for {who} (reference {reference}, expected by {due}). Reply CANCEL to withdraw it."
CANCELLED = ("Done: request {reference} is withdrawn and nobody will join. You are back with the assistant; "
             "ask for a person again at any time.")


def wants_to_cancel(msg: Message) -> bool:
    if msg.payload:
        return msg.payload == CANCEL_PAYLOAD
    return bool(_CANCEL.match(msg.body or ""))


@dataclass(frozen=True)
class Waiting:
    """What the HCP's page shows while a request for a person is open."""

    reference: str
    who: str
    status: str          # queued | claimed
    expected_by: str     # as the HCP reads it ("14:00 GMT on Mon 07 Dec")


def waiting_for(session: Session, conv: Conversation, hours: StaffHours = DEFAULT_HOURS) -> Waiting | None:
    handoff = open_handoff_for(session, conv)
    if handoff is None:
        return None
    return Waiting(reference=handoff.reference, who=TARGET_WORDS[HandoffTarget(handoff.target)],
                   status=handoff.status, expected_by=hours.format(handoff.sla_due_at))


def still_waiting(handoff: Handoff, hours: StaffHours = DEFAULT_HOURS, *, short: bool = False) -> ReplyDraft:
    words = {"who": TARGET_WORDS[HandoffTarget(handoff.target)], "reference": handoff.reference,
             "due": hours.format(handoff.sla_due_at)}
    text = (STILL_WAITING_SHORT if short else STILL_WAITING).format(**words)
    return ReplyDraft(text=text, buttons=[CANCEL_BUTTON])


def queued_handoff(session: Session, conv: Conversation) -> Handoff | None:
    """The conversation's request for a person while nobody has taken it yet."""
    handoff = open_handoff_for(session, conv)
    return handoff if handoff is not None and handoff.status == HandoffStatus.queued else None


def cancel(session: Session, conv: Conversation, msg: Message, now: datetime) -> list[ReplyDraft] | None:
    """Withdraw the queued request for a person; None when there is none to withdraw (or a person
    already has the conversation: then the words are theirs to read)."""
    handoff = queued_handoff(session, conv)
    if handoff is None:
        return None
    withdraw_offer(session, handoff, now, reason="cancelled by the HCP", actor_id=conv.hcp_id, actor_type="hcp")
    handoff.status = HandoffStatus.closed
    handoff.outcome = CANCELLED_OUTCOME
    handoff.closed_at = now
    conv.state = ConversationState.bot
    audit.record(session, action="handoff.cancelled", subject_type="handoff", subject_id=handoff.id,
                 actor_type="hcp", data={"conversation_id": conv.id, "reference": handoff.reference,
                                         "message_id": msg.id}, at=now)
    notify(session, conv.id)
    return [ReplyDraft(text=CANCELLED.format(reference=handoff.reference))]
