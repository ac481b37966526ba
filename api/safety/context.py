"""What the bot had just asked when a message came in: the screen's context.

The bot's form questions are known texts (the Rasa forms' ``action_ask_<slot>`` questions and
the WhatsApp verification intake's questions). The last message we sent before the inbound one
is matched against them; a match means the HCP is (probably) answering that slot, and the screen
reads the answer as a name, an address, a licence number … rather than as free narrative.

Reading the text we sent (not a flag kept elsewhere) keeps this right after a restart, for
either channel, and with Rasa down.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation, Direction, Message
from api.safety.screen import ScreenContext


@lru_cache(maxsize=1)
def _questions() -> tuple[tuple[str, str], ...]:
    """(question text, slot), longest text first so the most specific question wins."""
    from api.hcps import intake
    from api.rasa.actions import rate_answer, set_preference
    from api.rasa.actions.ask_form_slot import QUESTIONS as FORM_QUESTIONS

    # Feedback questions: the answer is about the answer or the service ("didn't cover renal dosing").
    pairs: dict[str, str] = {rate_answer.ASK_REASON: "rating_reason", set_preference.ASK: "preference"}
    for slot, (question, _buttons) in FORM_QUESTIONS.items():
        pairs[question] = slot
    for slot, question in intake.QUESTIONS.items():
        pairs.setdefault(question, slot)
    for slot, question in intake.NOT_UNDERSTOOD.items():
        pairs.setdefault(question, slot)
    return tuple(sorted(pairs.items(), key=lambda kv: len(kv[0]), reverse=True))


def slot_for_prompt(body: str | None) -> str | None:
    """The form slot a bot message asks for, or None when it asks for none."""
    if not body:
        return None
    for question, slot in _questions():
        if question in body:
            return slot
    return None


def screen_context(session: Session, conversation: Conversation, message: Message) -> ScreenContext:
    """The context of ``message``: the slot our last outbound message asked for, if any."""
    body = session.execute(
        select(Message.body)
        .where(Message.conversation_id == conversation.id, Message.direction == Direction.outbound,
               Message.id < message.id)
        .order_by(Message.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return ScreenContext(asked=slot_for_prompt(body))
