"""Verification intake for a first-time WhatsApp number, run by the api (Rasa need not be up).

A number no verified HCP is bound to gets public content only. Its first message is answered as
usual (Rasa: public content, a person, a service request), and then the bot starts collecting
the three facts a person needs to verify the HCP: full name, licence / registration number and
country. Each answer is checked for its shape; a message that is not an answer (a question, a
button, "talk to a person", or anything not sent right after our question, such as an answer to
a Rasa form's question) goes to Rasa as any other turn, and the pending question is repeated
after it, though never on two turns in a row. SKIP stops the intake. When the three facts are in, the HCP row goes
from ``collecting`` to ``pending`` (the verification console lists it) — the same outcome as the
Rasa verification form (``action_submit_verification``).

The order in ``api.pipeline.turn`` keeps the compliance rules first: the safety screen runs
before this, and a message the screen acted on (adverse event, opt-out/in, HELP, off-label) is
never read as an answer and never starts the intake on that turn. Services flush, never commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations import copy
from api.conversations.drafts import ReplyDraft
from api.conversations.models import Channel, Conversation, ConversationState, Direction, Message
from api.hcps.models import ChannelIdentity, Hcp, VerificationStatus
from api.rasa.actions.submit_verification import REPLY as DONE_TEXT
from api.rasa.actions.submit_verification import country_code

COLLECTING = "collecting"
DECLINED = "declined"
DONE = "done"
STEPS = ("hcp_name", "licence_number", "country")

INTRO = ("I can share general information with anyone. To give you information meant for healthcare "
         "professionals I need to verify you first — it takes a minute, and you can keep asking questions "
         "or ask for a person meanwhile (reply SKIP to stay with general information).")
QUESTIONS = {
    "hcp_name": "What is your full name?",
    "licence_number": "What is your professional licence or registration number?",
    "country": "In which country are you registered?",
}
REMINDER = "To finish verifying you: {question} (or reply SKIP)"
NOT_UNDERSTOOD = {
    "licence_number": "That does not look like a licence or registration number (it usually contains digits). "
                      "What is your professional licence or registration number?",
    "country": "I did not recognise that country. In which country are you registered (for example United "
               "Kingdom, Germany or DE)?",
}
DECLINED_TEXT = ("No problem — I'll share general information only. Reply 'verify me' whenever you want to be "
                 "verified, or ask for a person.")
_REMINDER_START = REMINDER.split("{", 1)[0]
_PROMPTS = (INTRO, _REMINDER_START, *QUESTIONS.values(), *NOT_UNDERSTOOD.values())

SKIP_WORDS = frozenset({"skip", "skip it", "not now", "later", "no thanks", "no thank you", "maybe later"})
_NOT_NAME_WORDS = frozenset(re.findall(r"\S+", (
    "verify verification me hello hi hey thanks thank yes no ok okay help stop start unstop "
    "someone somebody rep representative sample samples question please want need can could would will what how "
    "why when where who which is are do does did the a an i my you your about for with to of and or not dose "
    "side effect effects info information cardiovex respizan glucorel velostatin zelvamab ferlaglutide "
    "good morning afternoon evening")))
# Words that ask for a person when they stand alone or with a modifier ("human", "real person",
# "agent pls"), but are also surnames (Person, Human, Agent): a name may hold one when another token
# is a name, never when everything else is one of these modifiers.
_HANDOFF_WORDS = frozenset({"person", "human", "agent", "operator"})
_HANDOFF_MODIFIERS = frozenset({"real", "live", "actual", "proper", "any", "pls", "plz", "now", "asap"})
_NAME_TOKEN = re.compile(r"^[^\W\d_][^\W\d_'.\-]*(?:['.\-][^\W\d_]*)*\.?$")
_LICENCE = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9 ./\-]{2,31}$")


def _prompt(text: str) -> ReplyDraft:
    """An intake question; a person is always one tap away (on WhatsApp: "Reply 1 for …")."""
    return ReplyDraft(text=text, buttons=[copy.TALK_TO_PERSON])


@dataclass
class IntakeTurn:
    """What the intake does with one inbound message."""

    replies: list[ReplyDraft] = field(default_factory=list)
    consumed: bool = False  # answered here: Rasa is not asked
    start: bool = False     # start the intake once Rasa has answered this message
    remind: str | None = None  # the step to remind about after Rasa's reply

    def to_dict(self) -> dict[str, Any]:
        return {"replies": [r.to_dict() for r in self.replies], "consumed": self.consumed,
                "start": self.start, "remind": self.remind}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntakeTurn:
        return cls(replies=[ReplyDraft.from_dict(r) for r in data.get("replies", [])],
                   consumed=bool(data.get("consumed")), start=bool(data.get("start")), remind=data.get("remind"))


def eligible(session: Session, conv: Conversation) -> bool:
    """A WhatsApp conversation with no HCP yet and no intake started."""
    return (conv.channel == Channel.whatsapp and conv.hcp_id is None and conv.verification_intake is None)


def _hcp(session: Session, conv: Conversation) -> Hcp | None:
    hcp = session.get(Hcp, conv.hcp_id) if conv.hcp_id else None
    return hcp if hcp is not None and hcp.verification_status == VerificationStatus.collecting else None


def current_step(session: Session, conv: Conversation) -> str:
    hcp = _hcp(session, conv)
    if hcp is None or not hcp.name:
        return "hcp_name"
    if not hcp.licence_id:
        return "licence_number"
    return "country"


def looks_like_name(text: str) -> bool:
    tokens = text.split()
    if not 1 <= len(tokens) <= 6 or len(text) > 100:
        return False
    words = [t.lower().strip(".,!") for t in tokens]
    if not all(_NAME_TOKEN.match(t) for t in tokens) or any(w in _NOT_NAME_WORDS for w in words):
        return False
    if any(w in _HANDOFF_WORDS for w in words):
        return any(w not in _HANDOFF_WORDS | _HANDOFF_MODIFIERS for w in words)
    return True


def looks_like_licence(text: str) -> bool:
    return bool(_LICENCE.match(text)) and len(text.split()) <= 3


def on_message(session: Session, conv: Conversation, msg: Message, now: datetime) -> IntakeTurn:
    """Decide what the intake does with this message (the safety screen has already run)."""
    if conv.channel != Channel.whatsapp:
        return IntakeTurn()
    if conv.verification_intake is None:
        return IntakeTurn(start=eligible(session, conv))
    if conv.verification_intake != COLLECTING:
        return IntakeTurn()
    step = current_step(session, conv)
    text = " ".join((msg.body or "").split())
    low = text.lower().rstrip(".!")
    if msg.payload == "/verify_identity" or (not msg.payload and re.search(r"\bverif", low)):
        return IntakeTurn(replies=[_prompt(QUESTIONS[step])], consumed=True)
    if msg.payload:
        return IntakeTurn(remind=step)  # a button: Rasa's business
    if low in SKIP_WORDS:
        conv.verification_intake = DECLINED
        audit.record(session, action="hcp.verification_declined", subject_type="conversation", subject_id=conv.id,
                     actor_type="hcp", data={"step": step, "message_id": msg.id}, at=now)
        return IntakeTurn(replies=[ReplyDraft(text=DECLINED_TEXT)], consumed=True)
    if "?" in text or not _just_asked(session, conv, msg):
        # Only a message right after our question is an answer (not one to a Rasa form's question).
        return IntakeTurn(remind=step)
    if step == "hcp_name":
        if not looks_like_name(text):
            return IntakeTurn(remind=step)
        new = Hcp(name=text[:200], verification_status=VerificationStatus.collecting, created_at=now)
        session.add(new)
        session.flush()
        conv.hcp_id = new.id
        conv.audience = "public"
        return _next(session, conv, msg, now, step)
    hcp = _hcp(session, conv)
    assert hcp is not None
    if step == "licence_number":
        if looks_like_licence(text):
            hcp.licence_id = text[:64]
            return _next(session, conv, msg, now, step)
        if any(c.isdigit() for c in text) and len(text.split()) <= 3:  # a number, but not a licence's shape
            return IntakeTurn(replies=[_prompt(NOT_UNDERSTOOD[step])], consumed=True)
        return IntakeTurn(remind=step)
    code = country_code(text) if len(text) <= 40 else None
    if code is None:
        if len(text.split()) <= 3 and looks_like_name(text):  # a place name we do not know
            return IntakeTurn(replies=[_prompt(NOT_UNDERSTOOD[step])], consumed=True)
        return IntakeTurn(remind=step)
    hcp.country = code
    return _next(session, conv, msg, now, step)


def _next(session: Session, conv: Conversation, msg: Message, now: datetime, answered: str) -> IntakeTurn:
    audit.record(session, action="hcp.verification_answer", subject_type="conversation", subject_id=conv.id,
                 actor_type="hcp", data={"step": answered, "message_id": msg.id}, at=now)
    following = STEPS[STEPS.index(answered) + 1] if answered != STEPS[-1] else None
    if following is not None:
        return IntakeTurn(replies=[_prompt(QUESTIONS[following])], consumed=True)
    hcp = _hcp(session, conv)
    assert hcp is not None
    hcp.verification_status = VerificationStatus.pending
    conv.verification_intake = DONE
    if conv.address:
        identity = session.execute(select(ChannelIdentity).where(
            ChannelIdentity.channel == conv.channel, ChannelIdentity.address == conv.address)).scalar_one_or_none()
        if identity is None:
            session.add(ChannelIdentity(channel=conv.channel, address=conv.address, hcp_id=hcp.id, created_at=now))
        else:
            identity.hcp_id = hcp.id
    session.flush()
    audit.record(session, action="hcp.verification_requested", subject_type="hcp", subject_id=hcp.id,
                 actor_type="hcp", data={"conversation_id": conv.id, "channel": conv.channel, "country": hcp.country,
                                         "message_id": msg.id, "source": "api_intake"}, at=now)
    return IntakeTurn(replies=[ReplyDraft(text=DONE_TEXT.format(name=hcp.name, licence=hcp.licence_id,
                                                                country=hcp.country))], consumed=True)


def _reminded_last_turn(session: Session, conv: Conversation, msg: Message) -> bool:
    """Whether our reply to the HCP's previous message already carried a reminder."""
    previous = session.execute(
        select(Message.id).where(Message.conversation_id == conv.id, Message.direction == Direction.inbound,
                                 Message.id < msg.id).order_by(Message.id.desc()).limit(1)
    ).scalar_one_or_none()
    if previous is None:
        return False
    bodies = session.execute(select(Message.body).where(
        Message.conversation_id == conv.id, Message.direction == Direction.outbound, Message.id > previous,
        Message.id < msg.id)).scalars()
    return any(b and b.startswith(_REMINDER_START) for b in bodies)


def _just_asked(session: Session, conv: Conversation, msg: Message) -> bool:
    """Whether the last thing we sent before ``msg`` was one of the intake's questions."""
    body = session.execute(
        select(Message.body).where(Message.conversation_id == conv.id, Message.direction == Direction.outbound,
                                   Message.id < msg.id).order_by(Message.id.desc()).limit(1)
    ).scalar_one_or_none()
    return bool(body and body.startswith(_PROMPTS))


def without_verify_hint(drafts: list[ReplyDraft]) -> list[ReplyDraft]:
    """``drafts`` without the answer's verification hint (the intake's introduction follows them)."""
    return [d for d in drafts if d.text != copy.VERIFY_HINT]


def after_rasa(session: Session, conv: Conversation, msg: Message, turn: IntakeTurn, now: datetime, *,
               form_asking: bool = False) -> list[ReplyDraft]:
    """Follow Rasa's reply with the intake's question: the first one (start) or a reminder."""
    if conv.state != ConversationState.bot:
        return []  # the turn handed the conversation to a person: they take it from here
    if form_asking:
        return []  # a Rasa form (samples, meeting …) just asked its own question: that comes first
    if turn.start and eligible(session, conv):
        conv.verification_intake = COLLECTING
        audit.record(session, action="hcp.verification_started", subject_type="conversation", subject_id=conv.id,
                     actor_type="system", data={"channel": conv.channel, "message_id": msg.id}, at=now)
        return [_prompt(f"{INTRO} {QUESTIONS['hcp_name']}")]
    if turn.remind and conv.verification_intake == COLLECTING and not _reminded_last_turn(session, conv, msg):
        return [_prompt(REMINDER.format(question=QUESTIONS[turn.remind]))]
    return []

