"""Feedback and preferences captured in the conversation.

Schema notes for analytics: every row carries ``conversation_id``, ``hcp_id`` (when known),
``subject`` (the engagement-profile key: ``hcp:<id>`` or ``<channel>:<address>``), the inbound
``message_id`` it came from and a UTC timestamp. Preferences keep the current value in
``preference`` and every change, append-only, in ``preference_change``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, UTCDateTime, new_id


class SurveyKind(StrEnum):
    csat = "csat"   # 1-5 after a service request
    nps = "nps"     # 0-10, at most once per 90 days per subject


class SurveyStatus(StrEnum):
    asked = "asked"
    answered = "answered"


class PreferenceName(StrEnum):
    channel = "channel"
    language = "language"
    best_time = "best_time"
    frequency = "frequency"
    topics = "topics"
    opt_out = "opt_out"


class AnswerRating(Base):
    """Helpful / not helpful on one bot answer (``answer.id`` from the knowledge service)."""

    __tablename__ = "answer_rating"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # No FK: ``answer`` lives in another migration branch; the id is indexed for joins.
    answer_id: Mapped[str | None] = mapped_column(String(32), index=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"), index=True)
    subject: Mapped[str] = mapped_column(String(160), index=True)
    message_id: Mapped[int | None] = mapped_column(Integer)
    helpful: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(32))  # not_relevant | incomplete | unclear | other
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SurveyResponse(Base):
    """A CSAT or NPS question we asked, and the score when the HCP answered."""

    __tablename__ = "survey_response"
    __table_args__ = (Index("ix_survey_response_subject_kind_asked", "subject", "kind", "asked_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=SurveyStatus.asked)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"), index=True)
    subject: Mapped[str] = mapped_column(String(160))
    # CSAT: the request it rates (no FK: the table is in another package's migration branch).
    service_request_id: Mapped[str | None] = mapped_column(String(32), index=True)
    score: Mapped[int | None] = mapped_column(Integer)
    message_id: Mapped[int | None] = mapped_column(Integer)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FeedbackComment(Base):
    """Free feedback in the HCP's words ("you're sending me too much")."""

    __tablename__ = "feedback_comment"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"), index=True)
    subject: Mapped[str] = mapped_column(String(160), index=True)
    message_id: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    # frequency | content | channel | service | other — a coarse tag for analytics
    category: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Preference(Base):
    """The current value of one preference of one engagement profile."""

    __tablename__ = "preference"
    __table_args__ = (UniqueConstraint("subject", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subject: Mapped[str] = mapped_column(String(160))
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"), index=True)
    name: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))


class PreferenceChange(Base):
    """Append-only history: who changed what, when, from which message."""

    __tablename__ = "preference_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(160), index=True)
    hcp_id: Mapped[str | None] = mapped_column(ForeignKey("hcp.id"), index=True)
    conversation_id: Mapped[str | None] = mapped_column(ForeignKey("conversation.id"), index=True)
    name: Mapped[str] = mapped_column(String(16))
    old_value: Mapped[str | None] = mapped_column(String(200))
    new_value: Mapped[str] = mapped_column(String(200))
    actor_type: Mapped[str] = mapped_column(String(16))   # hcp | staff | system
    actor_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))       # bot | console | import
    message_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class FeedbackThemeRun(Base):
    """One run of the theme job (feedback/themes.py) over a time window."""

    __tablename__ = "feedback_theme_run"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    method: Mapped[str] = mapped_column(String(40))
    embedder: Mapped[str] = mapped_column(String(64))
    comments: Mapped[int] = mapped_column(Integer)
    ratings: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)


class FeedbackTheme(Base):
    """A theme of one run: label, characteristic terms, counts and sentiment per day, redacted quotes.

    ``trend`` is ``[[day ISO, count, sentiment sum], …]`` so a narrower window can be read from
    the same run; ``examples`` is ``[[created_at ISO, redacted text], …]``, nearest the theme's
    centre first. Nothing here holds personal data: quotes are redacted before they are stored.
    """

    __tablename__ = "feedback_theme"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(ForeignKey("feedback_theme_run.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(120))
    label: Mapped[str] = mapped_column(String(200))
    first_class: Mapped[bool] = mapped_column(Boolean)
    terms: Mapped[list[str]] = mapped_column(JSON)
    count: Mapped[int] = mapped_column(Integer)
    sentiment: Mapped[float] = mapped_column(Float)
    trend: Mapped[list[list[Any]]] = mapped_column(JSON)
    examples: Mapped[list[list[str]]] = mapped_column(JSON)
    # ids of the comments (``comment:<id>``) and not-helpful ratings (``rating:<id>``) in the theme
    members: Mapped[list[str] | None] = mapped_column(JSON)
