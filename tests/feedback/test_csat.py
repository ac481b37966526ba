"""One CSAT ask for whatever staff closed: the survey row, the question by subject, one button shape."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from api.conversations import service as conversations
from feedback import service as feedback
from feedback.models import SurveyKind, SurveyStatus


def test_a_closed_request_and_a_closed_handoff_ask_with_the_same_buttons(session: Session) -> None:
    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    conv = conversations.create_webchat(session, now=now, market="US")[0]
    request_ask = feedback.ask_csat(session, conv, about="service_request", now=now)
    handoff_ask = feedback.ask_csat(session, conv, about="handoff", now=now)
    assert request_ask.buttons == handoff_ask.buttons
    assert [b["title"] for b in request_ask.buttons] == ["1", "2", "3", "4", "5"]
    assert all(b["payload"] == f'/give_score{{"score": "{b["title"]}"}}' for b in request_ask.buttons)
    assert "request" in request_ask.question and "conversation" in handoff_ask.question
    for ask in (request_ask, handoff_ask):
        assert ask.survey.kind == SurveyKind.csat and ask.survey.status == SurveyStatus.asked
        assert ask.survey.conversation_id == conv.id
    # each ask carries its own copy: a caller that edits its buttons changes nobody else's
    request_ask.buttons[0]["title"] = "one"
    assert feedback.ask_csat(session, conv, about="handoff", now=now).buttons[0]["title"] == "1"
