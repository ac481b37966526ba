"""What an HCP said before they were verified follows them once a person approves the verification.

An anonymous web chat keeps its preferences, consent and feedback under the conversation
(``webchat:conversation:<id>``); an unverified WhatsApp number under its address
(``whatsapp:<number>``). When the verification of the HCP those conversations were bound to is
approved, ``adopt`` moves them onto the HCP's engagement profile (``hcp:<id>``):

- preferences: an anonymous value the HCP's own profile lacks, or one newer than the profile's, becomes
  the profile's value (with a history row, source ``verification``); the anonymous current row goes
  (its own history stays);
- consent: consent history is append-only, so the latest choice per channel address and purpose is
  appended again with the HCP's id (same time and source message, source ``verification``);
- feedback (answer ratings, CSAT / NPS answers, comments): linked to the HCP.

One audit event records what moved (counts only: no personal data in the chain). Services flush,
never commit. A rejected verification moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation
from api.hcps.models import ChannelIdentity, Hcp
from api.safety.models import Consent
from feedback.models import AnswerRating, FeedbackComment, Preference, PreferenceChange, SurveyResponse

SOURCE = "verification"


@dataclass(frozen=True)
class Adopted:
    preferences: int = 0
    consents: int = 0
    feedback: int = 0

    @property
    def total(self) -> int:
        return self.preferences + self.consents + self.feedback


def anonymous_keys(session: Session, hcp_id: str) -> tuple[list[str], set[str], set[tuple[str, str]]]:
    """(conversation ids, engagement-profile subjects, consent (channel, address)) the HCP used
    before being identified."""
    convs = list(session.execute(select(Conversation).where(Conversation.hcp_id == hcp_id)).scalars())
    consent_keys = {(c.channel, c.address or f"conversation:{c.id}") for c in convs}
    consent_keys |= {(ci.channel, ci.address) for ci in session.execute(
        select(ChannelIdentity).where(ChannelIdentity.hcp_id == hcp_id)).scalars()}
    subjects = {f"{channel}:{address}" for channel, address in consent_keys}
    return [c.id for c in convs], subjects, consent_keys


def adopt(session: Session, hcp: Hcp, *, staff_id: str, now: datetime) -> Adopted:
    """Move the HCP's anonymous preferences, consent and feedback onto their profile (audited)."""
    conv_ids, subjects, consent_keys = anonymous_keys(session, hcp.id)
    own = f"hcp:{hcp.id}"
    moved_prefs = _preferences(session, hcp, own, subjects, now)
    moved_consents = _consents(session, hcp, consent_keys)
    moved_feedback = _feedback(session, hcp, own, conv_ids, subjects)
    result = Adopted(moved_prefs, moved_consents, moved_feedback)
    session.flush()
    if result.total:
        audit.record(session, action="hcp.anonymous_records_adopted", subject_type="hcp", subject_id=hcp.id,
                     actor_type="staff", actor_id=staff_id,
                     data={"preferences": result.preferences, "consents": result.consents,
                           "feedback": result.feedback, "conversation_ids": sorted(conv_ids)}, at=now)
    return result


def _preferences(session: Session, hcp: Hcp, own: str, subjects: set[str], now: datetime) -> int:
    if not subjects:
        return 0
    mine = {p.name: p for p in session.execute(select(Preference).where(Preference.subject == own)).scalars()}
    anonymous = session.execute(select(Preference).where(Preference.subject.in_(subjects))
                                .order_by(Preference.updated_at)).scalars().all()
    moved = 0
    for row in anonymous:
        current = mine.get(row.name)
        if current is None or row.updated_at > current.updated_at:
            old = current.value if current is not None else None
            if current is None:
                current = Preference(subject=own, hcp_id=hcp.id, name=row.name, value=row.value,
                                     updated_at=row.updated_at, updated_by=row.updated_by)
                session.add(current)
                mine[row.name] = current
            else:
                current.value, current.updated_at, current.updated_by = row.value, row.updated_at, row.updated_by
            if old != row.value:
                session.add(PreferenceChange(subject=own, hcp_id=hcp.id, conversation_id=None, name=row.name,
                                             old_value=old, new_value=row.value, actor_type="system",
                                             actor_id=None, source=SOURCE, message_id=None, at=now))
            moved += 1
        session.delete(row)
    return moved


def _consents(session: Session, hcp: Hcp, keys: set[tuple[str, str]]) -> int:
    if not keys:
        return 0
    clauses = [(Consent.channel == ch) & (Consent.address == addr) for ch, addr in keys]
    latest: dict[tuple[str, str, str], Consent] = {}
    for row in session.execute(select(Consent).where(or_(*clauses)).order_by(Consent.id)).scalars():
        latest[(row.channel, row.address, row.purpose)] = row
    moved = 0
    for row in latest.values():
        if row.hcp_id == hcp.id:
            continue  # already the HCP's own choice
        session.add(Consent(channel=row.channel, address=row.address, hcp_id=hcp.id, purpose=row.purpose,
                            action=row.action, source=SOURCE, message_id=row.message_id, at=row.at))
        moved += 1
    return moved


def _feedback(session: Session, hcp: Hcp, own: str, conv_ids: list[str], subjects: set[str]) -> int:
    moved = 0
    models: tuple[type[AnswerRating] | type[SurveyResponse] | type[FeedbackComment], ...] = (
        AnswerRating, SurveyResponse, FeedbackComment)
    for model in models:
        where = [model.subject.in_(subjects)] if subjects else []
        if conv_ids:
            where.append(model.conversation_id.in_(conv_ids))
        if not where:
            continue
        rows = cast(list[AnswerRating | SurveyResponse | FeedbackComment], list(
            session.execute(select(model).where(or_(*where), model.subject != own)).scalars()))
        for row in rows:
            row.subject = own
            row.hcp_id = hcp.id
            moved += 1
    return moved
