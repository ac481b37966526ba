"""Handoffs to a human: the bot side (open, summarise, acknowledge) and the staff side
(queue, claim, release, transfer, hand back, close, reply), with the commercial/medical firewall
(``api.safety.firewall``). What the HCP is told: ``copy``; the profile card: ``profile``; content
staff can send: ``content_search``.

Services take a session and never commit; the caller's unit of work commits once. Every staff
action is an audit event with the staff member as actor.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, case, or_, select, update
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations import copy
from api.conversations.drafts import Button, ReplyDraft
from api.conversations.models import Conversation, ConversationState, Direction, Message, SenderType
from api.conversations.service import add_outbound, list_after
from api.errors import InvalidInput, NotFound
from api.handoffs import assign
from api.handoffs.assign import ROLE_FOR_TARGET, AssignPolicy
from api.handoffs.copy import (
    CLOSED,
    CONTACT_CHOICES,
    CONTACT_NOTED,
    CONTACT_PAYLOAD,
    HANDED_BACK,
    HANDOFF_NOBODY_AVAILABLE,
    HANDOFF_OUT_OF_HOURS,
    NO_OPEN_HANDOFF,
    SCORE_THANKS,
    STAFF_JOINED,
    TRANSFERRED_TO_PERSON,
    TRANSFERRED_TO_TEAM,
    contact_buttons,
)
from api.handoffs.errors import AlreadyClaimed, NotClaimed, NotHolder
from api.handoffs.hours import DEFAULT_HOURS, StaffHours
from api.handoffs.models import Handoff, HandoffStatus, HandoffTarget
from api.hcps.models import Hcp
from api.safety import firewall
from api.staff import notes
from api.staff.models import StaffRole, StaffUser
from api.staff.service import StaffIdentity, list_available

# How long until a human must reply, per target (business policy; consoles show the clock).
# Out of hours the clock starts when staff are next at work.
SLA = {
    HandoffTarget.rep: timedelta(hours=4),
    HandoffTarget.msl: timedelta(hours=24),
    HandoffTarget.medical_information: timedelta(hours=24),
}

TARGET_WORDS = {
    HandoffTarget.rep: "a colleague from our customer team",
    HandoffTarget.msl: "a medical science liaison",
    HandoffTarget.medical_information: "our Medical Information team",
}

# Who works a target's queue (ROLE_FOR_TARGET, api.handoffs.assign), and which queues a role works.
TARGETS_FOR_ROLE = {role: target for target, role in ROLE_FOR_TARGET.items()}
INBOX_ROLES = frozenset(ROLE_FOR_TARGET.values())

OUTCOMES = ("resolved", "follow_up_by_phone", "follow_up_by_email", "no_reply_from_hcp", "other")

# ---------------------------------------------------------------- bot side


def summarise(session: Session, conv: Conversation, *, target: str = HandoffTarget.rep, limit: int = 6) -> str:
    """One paragraph for the human: what the HCP said recently, oldest first.

    For a rep, messages that carried an adverse event or a medical question are not quoted
    (commercial/medical firewall): the rep learns only that such a message exists.
    """
    rows = session.execute(
        select(Message).where(Message.conversation_id == conv.id, Message.direction == Direction.inbound)
        .order_by(Message.id.desc()).limit(limit)
    ).scalars().all()
    ids = [m.id for m in rows]
    withheld = firewall.medical_message_ids(session, ids) if target == HandoffTarget.rep else set()
    # A message the screen has not finished is not quoted to a rep (it may turn out to be medical).
    unscreened = firewall.unscreened_ids(session, ids) if target == HandoffTarget.rep else set()
    said = []
    for m in reversed(rows):
        if m.id in unscreened:
            continue
        if m.id in withheld:
            said.append(firewall.WITHHELD_TEXT)
        elif m.body.strip():
            said.append('"' + m.body.strip().replace("\n", " ")[:200] + '"')
    channel = "WhatsApp" if conv.channel == "whatsapp" else "web chat"
    if not said:
        return f"HCP on {channel} asked to talk to a person."
    return f"HCP on {channel} asked for a person. Recent messages: " + " | ".join(said)


def _assigned_person(session: Session, conv: Conversation, target: str) -> str | None:
    """The HCP's own rep or MSL, when the CRM told us."""
    if conv.hcp_id is None:
        return None
    hcp = session.get(Hcp, conv.hcp_id)
    if hcp is None:
        return None
    return {HandoffTarget.rep: hcp.assigned_rep_id, HandoffTarget.msl: hcp.assigned_msl_id}.get(
        HandoffTarget(target))


def open_handoff(
    session: Session,
    conv: Conversation,
    *,
    target: str,
    reason: str,
    now: datetime,
    hours: StaffHours = DEFAULT_HOURS,
    policy: AssignPolicy = assign.OFF,
) -> Handoff:
    """Queue the conversation for a human; an already-open handoff is reused.

    The SLA clock starts now during staff hours, otherwise when staff are next at work. With
    auto-assignment on, it is offered at once to the next person who fits (``api.handoffs.assign``).
    """
    existing = open_handoff_for(session, conv)
    if existing is not None:
        return existing
    tgt = HandoffTarget(target) if target in HandoffTarget.__members__ else HandoffTarget.rep
    starts = hours.next_open(now)
    handoff = Handoff(
        reference=f"H-{secrets.token_hex(3).upper()}", conversation_id=conv.id, hcp_id=conv.hcp_id,
        target=tgt, reason=reason, summary=summarise(session, conv, target=tgt), status=HandoffStatus.queued,
        sla_due_at=starts + SLA[tgt], requested_staff_id=_assigned_person(session, conv, tgt), created_at=now,
        market=conv.market, language=assign.hcp_language(session, conv),
    )
    session.add(handoff)
    conv.state = ConversationState.queued
    session.flush()
    audit.record(session, action="handoff.queued", subject_type="handoff", subject_id=handoff.id,
                 actor_type="bot", data={"conversation_id": conv.id, "target": tgt, "reason": reason,
                                         "reference": handoff.reference,
                                         "requested_staff_id": handoff.requested_staff_id,
                                         "availability": availability(session, tgt, now, hours, policy)},
                 at=now)
    assign.offer_next(session, handoff, policy, now)
    return handoff


def open_handoff_for(session: Session, conv: Conversation) -> Handoff | None:
    return session.execute(
        select(Handoff).where(Handoff.conversation_id == conv.id,
                              Handoff.status.in_((HandoffStatus.queued, HandoffStatus.claimed)))
    ).scalar_one_or_none()


class Availability(StrEnum):
    open = "open"
    out_of_hours = "out_of_hours"
    nobody_available = "nobody_available"


def availability(session: Session, target: str, now: datetime, hours: StaffHours,
                 policy: AssignPolicy = assign.OFF) -> Availability:
    """With auto-assignment on, a person is available only when their presence is online."""
    if not hours.is_open(now):
        return Availability.out_of_hours
    role = ROLE_FOR_TARGET[HandoffTarget(target)]
    if not list_available(session, role) or (policy.enabled and not assign.online_count(session, role)):
        return Availability.nobody_available
    return Availability.open


def acknowledgement(handoff: Handoff, hours: StaffHours | None = None) -> str:
    due = hours.format(handoff.sla_due_at) if hours else handoff.sla_due_at.strftime("%H:%M UTC on %d %b")
    return copy.HANDOFF_QUEUED.format(who=TARGET_WORDS[HandoffTarget(handoff.target)],
                                      reference=handoff.reference, due=due)


def reply_draft(session: Session, handoff: Handoff, *, now: datetime, hours: StaffHours = DEFAULT_HOURS,
                policy: AssignPolicy = assign.OFF) -> ReplyDraft:
    """What the HCP is told: when a human will reply, honestly; out of hours or with nobody free,
    a callback or an email is offered instead."""
    if handoff.status != HandoffStatus.queued:
        return ReplyDraft(text=acknowledgement(handoff, hours))
    found = availability(session, handoff.target, now, hours, policy)
    words = {"who": TARGET_WORDS[HandoffTarget(handoff.target)], "reference": handoff.reference,
             "due": hours.format(handoff.sla_due_at)}
    if found == Availability.out_of_hours:
        text = HANDOFF_OUT_OF_HOURS.format(hours=hours.describe(), opens=hours.format(hours.next_open(now)),
                                           **words)
        return ReplyDraft(text=text, buttons=contact_buttons())
    if found == Availability.nobody_available:
        return ReplyDraft(text=HANDOFF_NOBODY_AVAILABLE.format(**words), buttons=contact_buttons())
    return ReplyDraft(text=acknowledgement(handoff, hours))


def handoff_from_api(session: Session, conv: Conversation, msg: Message, now: datetime,
                     reason: str, hours: StaffHours = DEFAULT_HOURS, policy: AssignPolicy = assign.OFF) -> ReplyDraft:
    """Used when Rasa is unavailable: the api itself honours 'talk to a person'."""
    handoff = open_handoff(session, conv, target=HandoffTarget.rep, reason=reason, now=now, hours=hours,
                           policy=policy)
    return reply_draft(session, handoff, now=now, hours=hours, policy=policy)


def _payload_args(payload: str, intent: str) -> dict[str, Any] | None:
    """``/intent{"k": "v"}`` → {"k": "v"}; None when the payload is another intent."""
    if not payload.startswith(intent):
        return None
    rest = payload[len(intent):].strip()
    if not rest:
        return {}
    if not rest.startswith("{"):
        return None
    try:
        args = json.loads(rest)
    except json.JSONDecodeError:
        return {}
    return args if isinstance(args, dict) else {}


def answer_contact_choice(session: Session, conv: Conversation, msg: Message, now: datetime) -> list[ReplyDraft] | None:
    """The HCP's 'call me back' / 'email me' choice, answered by the api in every state (while a
    conversation waits for a person it is not sent to Rasa). None: not such a message."""
    args = _payload_args(msg.payload or "", CONTACT_PAYLOAD)
    if args is None:
        return None
    via = str(args.get("via", ""))
    handoff = open_handoff_for(session, conv)
    if handoff is None:
        return [ReplyDraft(text=NO_OPEN_HANDOFF, buttons=[copy.TALK_TO_PERSON])]
    if via not in CONTACT_CHOICES:
        return [ReplyDraft(text="Please choose one of these:", buttons=contact_buttons())]
    previous = handoff.contact_preference
    handoff.contact_preference = via
    audit.record(session, action="handoff.contact_preference", subject_type="handoff", subject_id=handoff.id,
                 actor_type="hcp", actor_id=conv.hcp_id,
                 data={"via": via, "previous": previous, "message_id": msg.id, "conversation_id": conv.id}, at=now)
    who = TARGET_WORDS[HandoffTarget(handoff.target)]
    return [ReplyDraft(text=CONTACT_NOTED[via].format(who=who, reference=handoff.reference))]


def answer_score_without_rasa(session: Session, conv: Conversation, msg: Message,
                              now: datetime) -> list[ReplyDraft] | None:
    """A CSAT/NPS answer while Rasa is down: recorded by the api so it is never lost."""
    from feedback import service as feedback

    args = _payload_args(msg.payload or "", "/give_score")
    raw = str(args.get("score", "")) if args is not None else (msg.body or "").strip()
    if not re.fullmatch(r"\d{1,2}", raw) or feedback.pending_survey(session, conv) is None:
        return None
    try:
        feedback.record_score(session, conv, score=int(raw), message_id=msg.id, now=now)
    except InvalidInput as exc:
        return [ReplyDraft(text=f"Sorry, that score is out of range: {exc.message}.")]
    return [ReplyDraft(text=SCORE_THANKS)]


# ---------------------------------------------------------------- staff side: who sees what


def targets_for(ident: StaffIdentity) -> set[str]:
    return {str(TARGETS_FOR_ROLE[StaffRole(r)]) for r in ident.roles if r in TARGETS_FOR_ROLE}


def _visible_clause(ident: StaffIdentity) -> ColumnElement[bool]:
    clause: ColumnElement[bool] = Handoff.target.in_(targets_for(ident))
    if ident.territory:
        clause = clause & or_(Hcp.territory.is_(None), Hcp.territory == ident.territory,
                              Handoff.requested_staff_id == ident.id, Handoff.claimed_by == ident.id)
    return clause


@dataclass
class QueueEntry:
    handoff: Handoff
    conversation: Conversation
    hcp: Hcp | None
    summary: str
    requested_for_me: bool


@dataclass
class Queue:
    queued: list[QueueEntry] = field(default_factory=list)
    mine: list[QueueEntry] = field(default_factory=list)


def _entries(session: Session, ident: StaffIdentity, rows: Any) -> list[QueueEntry]:
    return [QueueEntry(h, c, hcp, summary_for(session, h, c, ident), h.requested_staff_id == ident.id)
            for h, c, hcp in rows]


def list_queue(session: Session, ident: StaffIdentity, *, limit: int = 200) -> Queue:
    """Queued handoffs this staff member may take (their role's target, their territory; the ones
    requested for them first, then by SLA), and the ones they hold."""
    base = (select(Handoff, Conversation, Hcp)
            .join(Conversation, Conversation.id == Handoff.conversation_id)
            .outerjoin(Hcp, Hcp.id == Handoff.hcp_id))
    queued = session.execute(
        base.where(Handoff.status == HandoffStatus.queued, _visible_clause(ident))
        .order_by(case((Handoff.offered_to == ident.id, 0), (Handoff.requested_staff_id == ident.id, 1), else_=2),
                  Handoff.sla_due_at, Handoff.id)
        .limit(limit)
    ).all()
    mine = session.execute(
        base.where(Handoff.status == HandoffStatus.claimed, Handoff.claimed_by == ident.id)
        .order_by(Handoff.sla_due_at, Handoff.id)
    ).all()
    return Queue(_entries(session, ident, queued), _entries(session, ident, mine))


def get_for_staff(session: Session, handoff_id: str, ident: StaffIdentity) -> Handoff:
    """The handoff, if this staff member's role and territory cover it (or they hold it)."""
    handoff = session.get(Handoff, handoff_id)
    if handoff is None:
        raise NotFound("no such handoff")
    if handoff.claimed_by == ident.id:
        return handoff
    if handoff.target not in targets_for(ident):
        raise NotHolder("this handoff is for another team")
    if ident.territory and handoff.requested_staff_id != ident.id and handoff.hcp_id is not None:
        hcp = session.get(Hcp, handoff.hcp_id)
        if hcp is not None and hcp.territory and hcp.territory != ident.territory:
            raise NotHolder("this handoff is for another territory")
    return handoff


def summary_for(session: Session, handoff: Handoff, conv: Conversation, ident: StaffIdentity) -> str:
    """The stored summary, or, for whoever may not read medical content, one that withholds it."""
    if firewall.sees_medical_content(ident):
        return handoff.summary
    return summarise(session, conv, target=HandoffTarget.rep)


def staff_name(session: Session, staff_id: str | None) -> str:
    if staff_id is None:
        return "nobody"
    user = session.get(StaffUser, staff_id)
    return user.name if user is not None else "another staff member"


def _conversation(session: Session, handoff: Handoff) -> Conversation:
    conv = session.get(Conversation, handoff.conversation_id)
    assert conv is not None
    return conv


def _notice(session: Session, conv: Conversation, text: str, now: datetime,
            buttons: list[Button] | None = None) -> Message:
    return add_outbound(session, conv, text=text, now=now, sender_type=SenderType.system,
                        buttons=[b.as_dict() for b in buttons or []])


def _require_holder(session: Session, handoff: Handoff, ident: StaffIdentity) -> None:
    if handoff.status == HandoffStatus.queued:
        raise NotClaimed(f"claim handoff {handoff.reference} first")
    if handoff.status != HandoffStatus.claimed:
        raise NotClaimed(f"handoff {handoff.reference} is {handoff.status.replace('_', ' ')}")
    if handoff.claimed_by != ident.id:
        raise NotHolder(f"{staff_name(session, handoff.claimed_by)} has this conversation; "
                        "only they can reply, hand it back or close it")


def _audit(session: Session, action: str, handoff: Handoff, ident: StaffIdentity, now: datetime,
           **data: Any) -> None:
    audit.record(session, action=action, subject_type="handoff", subject_id=handoff.id, actor_type="staff",
                 actor_id=ident.id, data={"reference": handoff.reference,
                                          "conversation_id": handoff.conversation_id, **data}, at=now)


# ---------------------------------------------------------------- staff side: actions


def claim(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime,
          policy: AssignPolicy = assign.OFF) -> Handoff:
    """Take the handoff (also: accept an offer). One conditional UPDATE decides: of two staff clicking
    at once exactly one wins; the other is told who has it. With auto-assignment on, a claim beyond
    the person's capacity is refused; claiming a handoff offered to a colleague withdraws the offer."""
    handoff = get_for_staff(session, handoff_id, ident)
    assign.reserve_for_claim(session, handoff, ident.id, policy)
    won = session.execute(
        update(Handoff).where(Handoff.id == handoff_id, Handoff.status == HandoffStatus.queued)
        .values(status=HandoffStatus.claimed, claimed_by=ident.id, claimed_at=now, offered_to=None,
                offered_at=None, offer_expires_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    current = session.execute(
        select(Handoff).where(Handoff.id == handoff_id).execution_options(populate_existing=True)
    ).scalar_one()
    if won != 1:
        if current.status == HandoffStatus.claimed and current.claimed_by == ident.id:
            return current  # a second click of the winner
        if current.status == HandoffStatus.claimed:
            holder = staff_name(session, current.claimed_by)
            raise AlreadyClaimed(f"{holder} already has handoff {current.reference}",
                                 detail={"claimed_by": current.claimed_by, "claimed_by_name": holder})
        raise AlreadyClaimed(f"handoff {current.reference} is {current.status.replace('_', ' ')}")
    conv = _conversation(session, handoff)
    conv.state = ConversationState.human
    conv.assigned_staff_id = ident.id
    _notice(session, conv, STAFF_JOINED.format(name=ident.name), now)
    accepted = assign.settle_on_claim(session, current, ident.id, now)
    _audit(session, "handoff.claimed", current, ident, now, target=current.target, accepted_offer=accepted)
    return current


def release(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime) -> Handoff:
    """Back to the queue for the rest of the team (auto-assignment does not offer it to them again)."""
    handoff = get_for_staff(session, handoff_id, ident)
    _require_holder(session, handoff, ident)
    handoff.status = HandoffStatus.queued
    handoff.claimed_by = None
    handoff.claimed_at = None
    conv = _conversation(session, handoff)
    conv.state = ConversationState.queued
    conv.assigned_staff_id = None
    assign.remember_release(session, handoff, ident.id, now)
    _audit(session, "handoff.released", handoff, ident, now)
    return handoff


def transfer(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime, *,
             to_target: str | None = None, to_staff_id: str | None = None, note: str | None = None,
             hours: StaffHours = DEFAULT_HOURS) -> Handoff:
    """To a named colleague (they hold it at once) or to another team's queue.

    The summary is rewritten for the new team: moving to the reps' queue withholds medical and
    safety messages (and the rep's transcript view withholds them too).
    """
    handoff = get_for_staff(session, handoff_id, ident)
    if handoff.status == HandoffStatus.claimed:
        _require_holder(session, handoff, ident)
    elif handoff.status != HandoffStatus.queued:
        raise NotClaimed(f"handoff {handoff.reference} is {handoff.status.replace('_', ' ')}")
    if not to_target and not to_staff_id:
        raise InvalidInput("choose a colleague or a team to transfer to")
    if to_target and to_target not in HandoffTarget.__members__:
        raise InvalidInput(f"unknown team {to_target!r}; teams are {', '.join(HandoffTarget)}")
    new_target = HandoffTarget(to_target) if to_target else HandoffTarget(handoff.target)
    person: StaffUser | None = None
    if to_staff_id:
        person = session.get(StaffUser, to_staff_id)
        if person is None or not person.active:
            raise InvalidInput("no such active colleague")
        if person.id == ident.id:
            raise InvalidInput("you cannot transfer a conversation to yourself")
        if not to_target and ROLE_FOR_TARGET[new_target] not in person.roles:
            teams = [t for t, r in ROLE_FOR_TARGET.items() if r in person.roles]
            if len(teams) != 1:
                raise InvalidInput(f"{person.name} does not work the {new_target} queue; choose a team too")
            new_target = teams[0]
        if ROLE_FOR_TARGET[new_target] not in person.roles:
            raise InvalidInput(f"{person.name} does not hold the {ROLE_FOR_TARGET[new_target]} role")
    if person is None and new_target == handoff.target:
        raise InvalidInput(f"the handoff is already with the {new_target} team; choose another team or a colleague")
    conv = _conversation(session, handoff)
    before = {"target": handoff.target, "claimed_by": handoff.claimed_by, "status": handoff.status}
    assign.withdraw(session, handoff, now, reason="transferred", actor_id=ident.id)
    if new_target != handoff.target:
        handoff.target = new_target
        handoff.summary = summarise(session, conv, target=new_target)
        handoff.sla_due_at = hours.next_open(now) + SLA[new_target]
    if person is not None:
        handoff.status = HandoffStatus.claimed
        handoff.claimed_by = person.id
        handoff.claimed_at = now
        handoff.requested_staff_id = person.id
        conv.state = ConversationState.human
        conv.assigned_staff_id = person.id
        _notice(session, conv, TRANSFERRED_TO_PERSON.format(name=person.name, reference=handoff.reference), now)
    else:
        handoff.status = HandoffStatus.queued
        handoff.claimed_by = None
        handoff.claimed_at = None
        handoff.requested_staff_id = _assigned_person(session, conv, new_target)
        conv.state = ConversationState.queued
        conv.assigned_staff_id = None
        _notice(session, conv, TRANSFERRED_TO_TEAM.format(who=TARGET_WORDS[new_target], reference=handoff.reference,
                                                          due=hours.format(handoff.sla_due_at)), now)
    _audit(session, "handoff.transferred", handoff, ident, now, before=before,
           after={"target": handoff.target, "claimed_by": handoff.claimed_by, "status": handoff.status},
           **notes.keep(session, (note or "").strip()[:500], subject_type="handoff", subject_id=handoff.id,
                        field="note", author_id=ident.id, at=now))
    return handoff


def hand_back(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime) -> Handoff:
    """The conversation goes back to the bot; the HCP is told."""
    handoff = get_for_staff(session, handoff_id, ident)
    _require_holder(session, handoff, ident)
    handoff.status = HandoffStatus.handed_back
    handoff.outcome = "handed_back"
    handoff.closed_at = now
    conv = _conversation(session, handoff)
    conv.state = ConversationState.bot
    conv.assigned_staff_id = None
    conv.failed_turns = 0
    _notice(session, conv, HANDED_BACK.format(name=ident.name), now, [copy.TALK_TO_PERSON])
    _audit(session, "handoff.handed_back", handoff, ident, now)
    return handoff


def close(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime, *, outcome: str,
          note: str | None = None) -> Handoff:
    """Close with an outcome; the conversation closes and the HCP is asked for CSAT (1-5)."""
    from feedback import service as feedback

    if outcome not in OUTCOMES:
        raise InvalidInput(f"unknown outcome {outcome!r}; outcomes are {', '.join(OUTCOMES)}")
    handoff = get_for_staff(session, handoff_id, ident)
    _require_holder(session, handoff, ident)
    handoff.status = HandoffStatus.closed
    handoff.outcome = outcome
    handoff.closed_at = now
    conv = _conversation(session, handoff)
    conv.state = ConversationState.closed
    conv.assigned_staff_id = None
    conv.failed_turns = 0
    _notice(session, conv, CLOSED.format(name=ident.name, reference=handoff.reference), now)
    csat = feedback.ask_csat(session, conv, about="handoff", now=now)
    add_outbound(session, conv, text=csat.question, now=now + timedelta(microseconds=1), buttons=csat.buttons)
    _audit(session, "handoff.closed", handoff, ident, now, outcome=outcome, survey_id=csat.survey.id,
           **notes.keep(session, (note or "").strip()[:500], subject_type="handoff", subject_id=handoff.id,
                        field="note", author_id=ident.id, at=now))
    return handoff


SPEAKER = {
    HandoffTarget.rep: "{name} · your representative",
    HandoffTarget.msl: "{name} · medical science liaison",
    HandoffTarget.medical_information: "Medical Information · {name}",
}


def speaker_label(handoff: Handoff, ident: StaffIdentity) -> str:
    """Who is speaking, as the HCP reads it: the team the conversation was handed to, and the person."""
    return SPEAKER[HandoffTarget(handoff.target)].format(name=ident.name)[:160]


def send_content(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime, *, content_id: str,
                 version: int, default_market: str) -> Message:
    """One approved item, verbatim, through the send-time gate (ContentGated: nothing is sent)."""
    from api.conversations.outbound import send_staff_content

    handoff = get_for_staff(session, handoff_id, ident)
    _require_holder(session, handoff, ident)
    return send_staff_content(session, _conversation(session, handoff), staff_id=ident.id, content_id=content_id,
                              version=version, now=now, default_market=default_market, purpose="handoff-reply",
                              sender_label=speaker_label(handoff, ident))


# ---------------------------------------------------------------- staff side: what they read


@dataclass(frozen=True)
class StaffMessage:
    id: int
    direction: str
    sender_type: str
    body: str | None
    approval_code: str | None
    created_at: datetime
    withheld: bool

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "direction": self.direction, "sender_type": self.sender_type, "body": self.body,
                "approval_code": self.approval_code, "created_at": self.created_at.isoformat(),
                "withheld": self.withheld}


def transcript(session: Session, conv: Conversation, ident: StaffIdentity, *, after: int = 0,
               now: datetime | None = None) -> list[StaffMessage]:
    """The conversation as this staff member may read it, by the live relay's rule (the polling
    fallback must never show more than the stream): for reps, medical and safety messages are
    placeholders; messages still being screened wait. Showing medical content is audited."""
    rows = firewall.settled(session, list_after(session, conv, after))
    medical = firewall.medical_ids(session, conv.id, rows)
    hide = not firewall.sees_medical_content(ident)
    out = [StaffMessage(m.id, m.direction, m.sender_type, None if (hide and m.id in medical) else m.body,
                        m.approval_code, m.created_at, hide and m.id in medical) for m in rows]
    shown = sorted(medical) if not hide else []
    if shown:
        audit.record(session, action="conversation.medical_content_viewed", subject_type="conversation",
                     subject_id=conv.id, actor_type="staff", actor_id=ident.id, data={"message_ids": shown},
                     at=now)
    return out


def transfer_options(session: Session, ident: StaffIdentity) -> list[dict[str, Any]]:
    """Colleagues who work an inbox queue (for the transfer picker)."""
    rows = session.execute(select(StaffUser).where(StaffUser.active.is_(True)).order_by(StaffUser.name)).scalars()
    return [{"id": u.id, "name": u.name, "roles": sorted(set(u.roles) & INBOX_ROLES), "available": u.available}
            for u in rows if u.id != ident.id and set(u.roles) & INBOX_ROLES]
