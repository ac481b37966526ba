"""The handoff summary respects the commercial/medical firewall."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.handoffs.service import open_handoff
from api.safety.models import MedicalInquiry

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CANARY = "CANARY-off-label-question-for-children"


def _conversation(session: Session) -> Conversation:
    conv, _ = conversations.create_webchat(session, now=NOW, market="US")
    return conv


def _screened(stored: conversations.Persisted) -> conversations.Persisted:
    stored.inbox.screened_at = NOW  # as the pipeline leaves a message once the safety screen has run
    return stored


def _with_medical_question(session: Session, conv: Conversation) -> None:
    _screened(conversations.persist_inbound(session, conv, text="hello there", now=NOW))
    stored = _screened(conversations.persist_inbound(session, conv, text=CANARY, now=NOW))
    session.add(MedicalInquiry(reference=f"MI-T-{conv.id[:8]}", text=CANARY, channel="webchat",
                               conversation_id=conv.id, message_id=stored.message.id, created_at=NOW))
    session.flush()


def test_a_rep_handoff_summary_never_quotes_a_medical_question(session: Session) -> None:
    conv = _conversation(session)
    _with_medical_question(session, conv)
    handoff = open_handoff(session, conv, target="rep", reason="hcp_request", now=NOW)
    assert CANARY not in handoff.summary
    assert '"hello there"' in handoff.summary
    assert "not shown" in handoff.summary


def test_a_medical_information_handoff_summary_keeps_the_full_context(session: Session) -> None:
    conv = _conversation(session)
    _with_medical_question(session, conv)
    handoff = open_handoff(session, conv, target="medical_information", reason="hcp_request", now=NOW)
    assert CANARY in handoff.summary


def test_a_message_the_screen_has_not_finished_is_not_quoted_to_a_rep(session: Session) -> None:
    conv = _conversation(session)
    _screened(conversations.persist_inbound(session, conv, text="good morning", now=NOW))
    waiting = "CANARY-still-being-screened"
    conversations.persist_inbound(session, conv, text=waiting, now=NOW)   # its turn has not run yet
    handoff = open_handoff(session, conv, target="rep", reason="hcp_request", now=NOW)
    assert waiting not in handoff.summary and '"good morning"' in handoff.summary
