"""Answer ratings, CSAT, NPS, comments and preferences. Services flush, never commit.

Every write updates the engagement profile immediately and is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation
from api.errors import InvalidInput, NotFound
from feedback import preference_parse
from feedback.models import (
    AnswerRating,
    FeedbackComment,
    Preference,
    PreferenceChange,
    PreferenceName,
    SurveyKind,
    SurveyResponse,
    SurveyStatus,
)

NPS_INTERVAL = timedelta(days=90)
RATING_REASONS = ("not_relevant", "incomplete", "unclear", "other")
SCORE_RANGE = {SurveyKind.csat: (1, 5), SurveyKind.nps: (0, 10)}


def subject_for(conversation: Conversation) -> str:
    """The engagement-profile key: the HCP when known, else the channel address."""
    if conversation.hcp_id:
        return f"hcp:{conversation.hcp_id}"
    return f"{conversation.channel}:{conversation.address or 'conversation:' + conversation.id}"


# ---------------------------------------------------------------- answer ratings


def rate_answer(
    session: Session, conversation: Conversation, *, answer_id: str | None, helpful: bool,
    message_id: int | None, now: datetime,
) -> AnswerRating:
    """Rate an answer; rating the same answer again updates the rating (one per answer)."""
    row = None
    if answer_id is not None:
        row = session.execute(select(AnswerRating).where(
            AnswerRating.answer_id == answer_id, AnswerRating.conversation_id == conversation.id)
        ).scalar_one_or_none()
    if row is None:
        row = AnswerRating(answer_id=answer_id, conversation_id=conversation.id, hcp_id=conversation.hcp_id,
                           subject=subject_for(conversation), message_id=message_id, helpful=helpful,
                           created_at=now)
        session.add(row)
    else:
        row.helpful = helpful
        row.reason = None
        row.message_id = message_id
        row.updated_at = now
    session.flush()
    audit.record(session, action="feedback.answer_rated", subject_type="answer_rating", subject_id=row.id,
                 actor_type="hcp", data={"answer_id": answer_id, "helpful": helpful,
                                         "conversation_id": conversation.id, "message_id": message_id}, at=now)
    return row


def set_rating_reason(
    session: Session, conversation: Conversation, *, reason: str, message_id: int | None, now: datetime,
) -> AnswerRating:
    """Attach a reason to the conversation's latest rating."""
    if reason not in RATING_REASONS:
        reason = "other"
    row = session.execute(
        select(AnswerRating).where(AnswerRating.conversation_id == conversation.id)
        .order_by(AnswerRating.created_at.desc()).limit(1)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("no rating to attach a reason to")
    row.reason = reason
    row.updated_at = now
    session.flush()
    audit.record(session, action="feedback.rating_reason", subject_type="answer_rating", subject_id=row.id,
                 actor_type="hcp", data={"reason": reason, "message_id": message_id}, at=now)
    return row


# ---------------------------------------------------------------- CSAT / NPS

# What a closed handoff or service request asks the HCP, and the one shape of the 1-5 buttons: the
# payload is the bot's own CSAT's, which Rasa's action_give_score records, and so does the api when
# Rasa is down (handoffs.answer_score_without_rasa).
CSAT_QUESTIONS = {
    "handoff": "How satisfied are you with how our team handled this conversation? 1 = poor, 5 = excellent.",
    "service_request": "How satisfied are you with how we handled this request? 1 = poor, 5 = excellent.",
}
CSAT_BUTTONS = tuple({"title": str(n), "payload": f'/give_score{{"score": "{n}"}}'} for n in range(1, 6))


@dataclass(frozen=True)
class CsatAsk:
    survey: SurveyResponse
    question: str
    buttons: list[dict[str, str]]


def ask_csat(session: Session, conversation: Conversation, *, about: Literal["handoff", "service_request"],
             now: datetime, service_request_id: str | None = None) -> CsatAsk:
    """Record the CSAT survey of a closed handoff or service request, and return the question and
    buttons to send for it (the caller sends them, in its own message)."""
    survey = ask_survey(session, conversation, kind="csat", now=now, service_request_id=service_request_id)
    return CsatAsk(survey, CSAT_QUESTIONS[about], [dict(b) for b in CSAT_BUTTONS])



def ask_survey(
    session: Session, conversation: Conversation, *, kind: str, now: datetime,
    service_request_id: str | None = None,
) -> SurveyResponse:
    row = SurveyResponse(kind=SurveyKind(kind), status=SurveyStatus.asked, conversation_id=conversation.id,
                         hcp_id=conversation.hcp_id, subject=subject_for(conversation),
                         service_request_id=service_request_id, asked_at=now)
    session.add(row)
    session.flush()
    audit.record(session, action=f"feedback.{kind}_asked", subject_type="survey_response", subject_id=row.id,
                 actor_type="bot", data={"conversation_id": conversation.id,
                                         "service_request_id": service_request_id}, at=now)
    return row


def nps_due(session: Session, conversation: Conversation, *, now: datetime) -> bool:
    """NPS is asked at most once per 90 days per engagement profile (answered or not)."""
    last = session.execute(
        select(SurveyResponse.asked_at).where(SurveyResponse.subject == subject_for(conversation),
                                              SurveyResponse.kind == SurveyKind.nps)
        .order_by(SurveyResponse.asked_at.desc()).limit(1)
    ).scalar_one_or_none()
    return last is None or now - last >= NPS_INTERVAL


def pending_survey(session: Session, conversation: Conversation) -> SurveyResponse | None:
    """The latest survey asked in this conversation that has no score yet."""
    return session.execute(
        select(SurveyResponse).where(SurveyResponse.conversation_id == conversation.id,
                                     SurveyResponse.status == SurveyStatus.asked)
        .order_by(SurveyResponse.asked_at.desc()).limit(1)
    ).scalar_one_or_none()


def record_score(
    session: Session, conversation: Conversation, *, score: int, message_id: int | None, now: datetime,
) -> SurveyResponse:
    """Store a score against the survey we asked last in this conversation."""
    row = pending_survey(session, conversation)
    if row is None:
        raise NotFound("no survey is waiting for a score")
    low, high = SCORE_RANGE[SurveyKind(row.kind)]
    if not low <= score <= high:
        raise InvalidInput(f"{row.kind} score must be {low}-{high}")
    row.score = score
    row.status = SurveyStatus.answered
    row.answered_at = now
    row.message_id = message_id
    session.flush()
    audit.record(session, action=f"feedback.{row.kind}_answered", subject_type="survey_response",
                 subject_id=row.id, actor_type="hcp", data={"score": score, "message_id": message_id}, at=now)
    return row


# ---------------------------------------------------------------- comments


_CATEGORY_WORDS = (
    ("frequency", ("too much", "too many", "too often", "so many", "less often", "every day", "spam")),
    ("channel", ("email", "whatsapp", "phone", "call me", "sms", "text me")),
    ("content", ("answer", "information", "content", "irrelevant", "not relevant", "useful", "accurate")),
    ("service", ("slow", "late", "waiting", "rep ", "service", "sample", "delivery")),
)


def comment_category(text: str) -> str:
    low = f" {text.lower()} "
    for category, words in _CATEGORY_WORDS:
        if any(w in low for w in words):
            return category
    return "other"


def add_comment(
    session: Session, conversation: Conversation, *, text: str, message_id: int | None, now: datetime,
) -> FeedbackComment:
    if not text.strip():
        raise InvalidInput("an empty comment")
    row = FeedbackComment(conversation_id=conversation.id, hcp_id=conversation.hcp_id,
                          subject=subject_for(conversation), message_id=message_id, text=text.strip(),
                          category=comment_category(text), created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, action="feedback.comment", subject_type="feedback_comment", subject_id=row.id,
                 actor_type="hcp", data={"category": row.category, "message_id": message_id}, at=now)
    return row


# ---------------------------------------------------------------- preferences


def parse_preferences(text: str) -> dict[str, str]:
    """The preferences a message states, as {name: value}; deterministic, no model
    (``feedback.preference_parse``: negations and "X instead of Y" are understood)."""
    return dict(preference_parse.parse(text).values)


AUDITED_VALUES = frozenset({PreferenceName.frequency, PreferenceName.language, PreferenceName.channel,
                            PreferenceName.opt_out})


def set_preference(
    session: Session, conversation: Conversation, *, name: str, value: str, message_id: int | None,
    now: datetime, actor_type: str = "hcp", actor_id: str | None = None, source: str = "bot",
) -> PreferenceChange | None:
    """Set one preference now; returns the history row, or None when the value is unchanged."""
    try:
        pref_name = PreferenceName(name)
    except ValueError as exc:
        raise InvalidInput(f"unknown preference {name!r}") from exc
    if not value.strip():
        raise InvalidInput("an empty preference value")
    return _write(session, conversation, pref_name, value, message_id=message_id, now=now,
                  actor_type=actor_type, actor_id=actor_id, source=source)


UNSET = ""   # ``preference_change.new_value`` of a preference cleared (an undo back to "never set")


def _write(
    session: Session, conversation: Conversation, pref_name: PreferenceName, value: str | None, *,
    message_id: int | None, now: datetime, actor_type: str, actor_id: str | None, source: str,
) -> PreferenceChange | None:
    """Set (or, for None, clear) one preference and append its history row; None when unchanged."""
    subject = subject_for(conversation)
    current = session.execute(
        select(Preference).where(Preference.subject == subject, Preference.name == pref_name)
    ).scalar_one_or_none()
    old = current.value if current is not None else None
    if old == value:
        return None
    who = actor_id or conversation.hcp_id or subject
    if value is None:
        if current is not None:
            session.delete(current)
    elif current is None:
        session.add(Preference(subject=subject, hcp_id=conversation.hcp_id, name=pref_name, value=value,
                               updated_at=now, updated_by=who[:64]))
    else:
        current.value = value
        current.updated_at = now
        current.updated_by = who[:64]
    change = PreferenceChange(subject=subject, hcp_id=conversation.hcp_id, conversation_id=conversation.id,
                              name=pref_name, old_value=old, new_value=value if value is not None else UNSET,
                              actor_type=actor_type, actor_id=actor_id, source=source, message_id=message_id,
                              at=now)
    session.add(change)
    session.flush()
    # No personal data in the audit chain (it survives erasure): the subject by id, never by phone
    # number, and values only from closed vocabularies (best time and topics are the HCP's words).
    shown = pref_name in AUDITED_VALUES
    audit.record(session, action="preference.changed", subject_type="preference",
                 subject_id=f"hcp:{conversation.hcp_id}" if conversation.hcp_id else f"conversation:{conversation.id}",
                 actor_type=actor_type, actor_id=actor_id,
                 data={"name": pref_name, "old": old if shown else None, "new": value if shown else None,
                       "message_id": message_id, "conversation_id": conversation.id, "source": source}, at=now)
    return change


def undo_last_change(
    session: Session, conversation: Conversation, *, message_id: int | None, now: datetime,
) -> list[PreferenceChange]:
    """Put back what the HCP's latest preference message in this conversation changed.

    The history stays append-only: the undo is new rows (source ``undo``). Only the latest group (one
    message's changes, made through the bot in this conversation) is undone, once; an opt-out is never
    undone here (consenting again is its own, explicit step).
    """
    recent = list(session.execute(
        select(PreferenceChange).where(PreferenceChange.subject == subject_for(conversation))
        .order_by(PreferenceChange.id.desc()).limit(20)
    ).scalars())
    if not recent or recent[0].source != "bot" or recent[0].conversation_id != conversation.id:
        return []
    top = recent[0]
    group = [h for h in recent
             if h.source == "bot" and h.message_id == top.message_id and h.at == top.at
             and h.conversation_id == conversation.id]
    written: list[PreferenceChange] = []
    for h in group:
        if h.name == PreferenceName.opt_out:
            continue
        change = _write(session, conversation, PreferenceName(h.name), h.old_value, message_id=message_id, now=now,
                        actor_type="hcp", actor_id=None, source="undo")
        if change is not None:
            written.append(change)
    return written


def profile(session: Session, conversation: Conversation) -> dict[str, str]:
    """The engagement profile's current preferences."""
    rows = session.execute(select(Preference).where(Preference.subject == subject_for(conversation))).scalars()
    return {r.name: r.value for r in rows}


def history(session: Session, conversation: Conversation) -> list[PreferenceChange]:
    return list(session.execute(
        select(PreferenceChange).where(PreferenceChange.subject == subject_for(conversation))
        .order_by(PreferenceChange.id)
    ).scalars())


PREFERENCE_WORDS = {
    "frequency": {"monthly": "at most once a month", "weekly": "at most once a week",
                  "quarterly": "at most once a quarter", "daily": "daily", "less_often": "less often"},
    "language": {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
                 "pt": "Portuguese", "nl": "Dutch"},
    "channel": {"email": "email", "whatsapp": "WhatsApp", "sms": "SMS", "phone": "phone", "webchat": "web chat"},
}


BEST_TIME_WORDS = {"weekdays": "weekdays only (not at weekends)", "not_morning": "not in the morning",
                   "not_afternoon": "not in the afternoon", "not_evening": "not in the evening",
                   "weekend": "at the weekend"}


def describe(name: str, value: str, instead_of: str | None = None) -> str:
    """Human wording for an acknowledgement: 'frequency: at most once a month', 'channel: email
    instead of WhatsApp', 'topics: Respizan'."""
    label = {"best_time": "best time", "opt_out": "no more", "topics": "topics"}.get(name, name)
    if value == UNSET:
        return f"{label}: not set"
    words = dict(PREFERENCE_WORDS.get(name, {}))
    if name == "best_time":
        words.update(BEST_TIME_WORDS)
    if name == "topics":
        from api.requests.slots import catalogue

        names = {p.key: p.display_name for p in catalogue().products}
        shown = ", ".join(names.get(t, t.replace("_", " ")) for t in value.split(","))
    else:
        shown = words.get(value, value.replace(",", ", "))
    if instead_of:
        shown += f" instead of {words.get(instead_of, instead_of)}"
    return f"{label}: {shown}"
