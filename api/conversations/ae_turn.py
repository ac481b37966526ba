"""One good turn when the safety screen has just recorded an adverse event.

The HCP gets one message that thanks them and asks for what is still missing of the four minimum
criteria, then, if they also asked something, the answer to that question. They never get a small
talk filler ("anything else?") or a "didn't get that" after the acknowledgement:

- Rasa is given the question embedded in the message (with the product named, if the question
  itself does not name it), or, when there is none, the ``/report_adverse_event`` intent, so that
  a form in progress still asks its next question;
- of Rasa's replies only the substantive ones are kept: an approved answer, an honest "no approved
  answer" with its offers, a form's question, a handoff confirmation (custom payloads); plain
  small-talk responses and failed turns are dropped;
- when Rasa is down, an embedded question gets a plain "I can't look that up right now" with a person
  one tap away, and a report without a question gets nothing more than the acknowledgement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from api.conversations.drafts import ReplyDraft
from api.conversations.spelling import for_catalogue

AE_INTENT = "/report_adverse_event"
FOLLOW_UP_THANKS = "Thank you — I've added that to the safety report."
QUESTION_WHILE_RASA_DOWN = ("I can't look up the answer to your question right now. It is saved; a person from our "
                            "team can pick it up.")

_QUESTION_START = re.compile(
    r"^(?:what|what's|whats|how|can|could|is|are|should|shall|does|do|did|when|which|where|why|will|would|may|"
    r"might|any|has|have|pls advise|please advise|advise|wondering|i wonder)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE = re.compile(r"(?:,|;|\s-\s|\s–\s|\bso\b|\band\b|\bbut\b)\s*", re.IGNORECASE)


def _is_question(sentence: str) -> bool:
    return sentence.endswith("?") or bool(_QUESTION_START.match(sentence))


def _question_clause(sentence: str) -> str:
    """The part of a sentence that asks: "pt got hives on X, can she keep taking it?" → "can she keep taking it?"."""
    parts = [p.strip() for p in _CLAUSE.split(sentence) if p and p.strip()]
    for i, part in enumerate(parts):
        if _QUESTION_START.match(part):
            return " ".join(parts[i:])
    return sentence


def embedded_question(text: str) -> str | None:
    """The question asked in an adverse-event message, if any (with the product it is about)."""
    sentences = [s.strip() for s in _SENTENCE_END.split(text.strip()) if s and s.strip()]
    asked = [_question_clause(s) for s in sentences if _is_question(s)]
    if not asked:
        return None
    question = " ".join(asked)
    products = _products(text)
    if products and not _products(question):
        question = f"{question.rstrip('?')} ({', '.join(products)})?"
    return question


def _products(text: str) -> list[str]:
    spelling = for_catalogue()
    low = spelling.correct(text).lower()
    return [n for n in spelling.names if re.search(rf"\b{re.escape(n)}\b", low)]


def rasa_text(body: str) -> str:
    """What Rasa is given for an adverse-event message."""
    return embedded_question(body) or AE_INTENT


def one_acknowledgement(drafts: Iterable[ReplyDraft]) -> list[ReplyDraft]:
    """The screen's text replies (acknowledgement, missing criteria) as one message."""
    merged: list[ReplyDraft] = []
    for draft in drafts:
        last = merged[-1] if merged else None
        if (last is not None and last.content_ref is None and draft.content_ref is None and not last.buttons
                and last.text and draft.text and last.sender_type == draft.sender_type):
            merged[-1] = ReplyDraft(text=f"{last.text} {draft.text}", buttons=draft.buttons,
                                    sender_type=draft.sender_type)
        else:
            merged.append(draft)
    return merged


def substantive(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rasa's replies worth sending after an acknowledgement (see the module docstring)."""
    kept = []
    for m in messages:
        custom = m.get("custom")
        if isinstance(custom, dict) and not custom.get("turn_failed"):
            kept.append(m)
    return kept
