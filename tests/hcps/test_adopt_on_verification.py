"""Preferences, consent and feedback an HCP gave before being identified follow them when a person
approves their verification (api/hcps/adopt.py), and only then; the move is audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.channels.whatsapp import service as wa
from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.errors import Conflict
from api.hcps import verification
from api.hcps.models import Hcp, VerificationStatus
from api.safety import service as safety
from api.safety.models import Consent
from feedback import service as feedback
from feedback.models import AnswerRating, FeedbackComment, Preference, PreferenceChange, SurveyResponse

T0 = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)


def _claims_to_be_hcp(session: Session, conv: Conversation, at: datetime) -> Hcp:
    """What the verification form does: a pending HCP bound to the conversation."""
    hcp = Hcp(name="Dr Imogen Fairweather", licence_id="GMC 5566778", country="GB",
              verification_status=VerificationStatus.pending, created_at=at)
    session.add(hcp)
    session.flush()
    conv.hcp_id = hcp.id
    return hcp


def _anonymous_webchat_with_history(session: Session) -> Conversation:
    conv, _ = conversations.create_webchat(session, now=T0, market="GB")
    feedback.set_preference(session, conv, name="best_time", value="after 5pm on weekdays", message_id=None, now=T0)
    feedback.set_preference(session, conv, name="frequency", value="monthly", message_id=None, now=T0)
    safety.record_consent(session, channel=conv.channel, address=f"conversation:{conv.id}", hcp_id=None,
                          purpose="marketing", action="opt_out", source="bot", message_id=None, now=T0)
    feedback.rate_answer(session, conv, answer_id="ans-anon-1", helpful=True, message_id=None, now=T0)
    feedback.add_comment(session, conv, text="the chat page loads slowly on the ward PCs", message_id=None, now=T0)
    feedback.ask_survey(session, conv, kind="csat", now=T0)
    feedback.record_score(session, conv, score=4, message_id=None, now=T0 + timedelta(minutes=1))
    return conv


def test_webchat_preferences_consent_and_feedback_follow_the_hcp_once_verified(session: Session) -> None:
    conv = _anonymous_webchat_with_history(session)
    hcp = _claims_to_be_hcp(session, conv, T0 + timedelta(minutes=5))
    # While pending the anonymous choices are not on the (unconfirmed) profile yet.
    assert "best_time" not in feedback.profile(session, conv)

    verification.decide(session, hcp.id, approve=True, staff_id="admin-1", reason="", now=T0 + timedelta(hours=3))

    prefs = feedback.profile(session, conv)
    assert prefs["best_time"] == "after 5pm on weekdays" and prefs["frequency"] == "monthly"
    own = f"hcp:{hcp.id}"
    rows = session.execute(select(Preference).where(Preference.hcp_id == hcp.id)).scalars().all()
    assert {r.subject for r in rows} == {own}
    assert session.execute(select(Preference).where(
        Preference.subject == f"webchat:conversation:{conv.id}")).first() is None
    history = session.execute(select(PreferenceChange).where(PreferenceChange.subject == own)).scalars().all()
    assert {(h.name, h.source) for h in history} == {("best_time", "verification"), ("frequency", "verification")}
    consent = session.execute(select(Consent).where(Consent.hcp_id == hcp.id)).scalars().all()
    assert [(c.purpose, c.action, c.source, c.at) for c in consent] == [("marketing", "opt_out", "verification", T0)]
    linked = [*session.execute(select(AnswerRating).where(AnswerRating.conversation_id == conv.id)).scalars(),
              *session.execute(select(FeedbackComment).where(FeedbackComment.conversation_id == conv.id)).scalars(),
              *session.execute(select(SurveyResponse).where(SurveyResponse.conversation_id == conv.id)).scalars()]
    assert len(linked) == 3 and all(r.hcp_id == hcp.id and r.subject == own for r in linked)
    event = session.execute(select(AuditEvent).where(AuditEvent.action == "hcp.anonymous_records_adopted",
                                                     AuditEvent.subject_id == hcp.id)).scalar_one()
    assert event.actor_id == "admin-1"
    assert event.data["preferences"] == 2 and event.data["consents"] == 1 and event.data["feedback"] == 3


def test_a_rejected_verification_moves_nothing(session: Session) -> None:
    conv = _anonymous_webchat_with_history(session)
    hcp = _claims_to_be_hcp(session, conv, T0 + timedelta(minutes=5))

    verification.decide(session, hcp.id, approve=False, staff_id="admin-1", reason="licence not found",
                        now=T0 + timedelta(hours=3))

    assert session.execute(select(Preference).where(Preference.hcp_id == hcp.id)).first() is None
    assert session.execute(select(Consent).where(Consent.hcp_id == hcp.id)).first() is None
    assert session.execute(select(FeedbackComment).where(FeedbackComment.hcp_id == hcp.id)).first() is None
    assert session.execute(select(AuditEvent).where(AuditEvent.action == "hcp.anonymous_records_adopted")
                           ).first() is None


def test_whatsapp_number_choices_follow_and_a_newer_profile_value_wins(session: Session) -> None:
    number = "whatsapp:+447700900417"
    conv = wa.conversation_for(session, number, now=T0, market="GB")
    # Before the number is bound to anyone: kept under the number.
    feedback.set_preference(session, conv, name="language", value="de", message_id=None, now=T0)
    feedback.set_preference(session, conv, name="best_time", value="mornings", message_id=None, now=T0)
    safety.record_consent(session, channel=conv.channel, address=number, hcp_id=None, purpose="service",
                          action="opt_in", source="whatsapp", message_id=None, now=T0)
    hcp = _claims_to_be_hcp(session, conv, T0 + timedelta(minutes=2))
    # After the claim, a newer choice is made on the HCP's own (pending) profile: it must not be overwritten.
    feedback.set_preference(session, conv, name="best_time", value="lunchtime", message_id=None,
                            now=T0 + timedelta(minutes=10))

    verification.decide(session, hcp.id, approve=True, staff_id="admin-2", reason="", now=T0 + timedelta(days=1))

    prefs = feedback.profile(session, conv)
    assert prefs == {"language": "de", "best_time": "lunchtime"}
    consent = session.execute(select(Consent).where(Consent.hcp_id == hcp.id)).scalars().all()
    assert [(c.channel, c.address, c.action) for c in consent] == [("whatsapp", number, "opt_in")]


def test_approving_twice_is_refused_and_adopts_once(session: Session) -> None:
    conv = _anonymous_webchat_with_history(session)
    hcp = _claims_to_be_hcp(session, conv, T0)
    verification.decide(session, hcp.id, approve=True, staff_id="admin-1", reason="", now=T0 + timedelta(hours=1))
    with pytest.raises(Conflict):
        verification.decide(session, hcp.id, approve=True, staff_id="admin-1", reason="",
                            now=T0 + timedelta(hours=2))
    assert len(session.execute(select(Consent).where(Consent.hcp_id == hcp.id)).scalars().all()) == 1
