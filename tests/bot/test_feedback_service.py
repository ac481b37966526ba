"""Preference parsing and the feedback schema's rules, without Rasa."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from api.conversations.models import Conversation
from api.errors import InvalidInput
from feedback import service as feedback
from tests.bot.conftest import NOW


@pytest.mark.parametrize(("text", "expected"), [
    ("once a month is enough", {"frequency": "monthly"}),
    ("you're sending me too much", {"frequency": "less_often"}),
    ("please contact me by email instead", {"channel": "email"}),
    ("can you send messages in French", {"language": "fr"}),
    ("best time to reach me is after 5pm", {"best_time": "after 5pm"}),
    ("mornings are best for me", {"best_time": "morning"}),
    ("I'm only interested in diabetes topics", {"topics": "diabetes"}),
    ("no more marketing emails", {"opt_out": "marketing"}),
    ("what is the dose of cardiovex", {}),
])
def test_preferences_are_read_from_the_hcps_words(text: str, expected: dict[str, str]) -> None:
    assert feedback.parse_preferences(text) == expected


def test_a_profile_is_keyed_by_the_hcp_once_known(session: Session) -> None:
    conv = Conversation(channel="whatsapp", address="+15550001", state="bot", audience="public",
                        failed_turns=0, created_at=NOW)
    assert feedback.subject_for(conv) == "whatsapp:+15550001"
    conv.hcp_id = "h1"
    assert feedback.subject_for(conv) == "hcp:h1"


def test_setting_the_same_value_twice_records_no_new_history(session: Session,
                                                             conversation: Conversation) -> None:
    first = feedback.set_preference(session, conversation, name="language", value="de", message_id=None, now=NOW)
    again = feedback.set_preference(session, conversation, name="language", value="de", message_id=None, now=NOW)
    assert first is not None and again is None
    assert len(feedback.history(session, conversation)) == 1


def test_an_unknown_preference_is_refused(session: Session, conversation: Conversation) -> None:
    with pytest.raises(InvalidInput):
        feedback.set_preference(session, conversation, name="favourite_colour", value="blue",
                                message_id=None, now=NOW)
