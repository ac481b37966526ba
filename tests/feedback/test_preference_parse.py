"""Preference parsing (feedback.preference_parse): what is wanted, what is turned down, and the echo."""

from __future__ import annotations

import pytest

from feedback import service as feedback
from feedback.preference_parse import parse


@pytest.mark.parametrize(("typed", "channel", "turned_down"), [
    ("I'd rather hear from you over SMS than on WhatsApp", "sms", "whatsapp"),
    ("use WhatsApp for me, not e-mail", "whatsapp", "email"),
    ("please move me from email to the web chat", "webchat", "email"),
    ("phone me instead of sending emails", "phone", "email"),
])
def test_the_channel_kept_is_the_one_wanted_not_the_one_replaced(typed: str, channel: str, turned_down: str) -> None:
    found = parse(typed)
    assert found.values.get("channel") == channel
    assert found.instead_of.get("channel") == turned_down


def test_a_channel_only_turned_down_sets_no_channel() -> None:
    assert "channel" not in parse("please don't contact me by phone").values


@pytest.mark.parametrize(("typed", "best_time"), [
    ("never at the weekend please", "weekdays"),
    ("no messages on weekends", "weekdays"),
    ("weekdays only", "weekdays"),
    ("avoid mornings, I'm in clinic", "not_morning"),
    ("evenings suit me better", "evening"),
])
def test_best_time_understands_a_negation(typed: str, best_time: str) -> None:
    assert parse(typed).values.get("best_time") == best_time


@pytest.mark.parametrize(("typed", "topics"), [
    ("just keep me posted about Glucorel", "glucorel"),
    ("only updates on ferlaglutide", "glucorel"),        # the generic name
    ("only stuff about cardiovexx", "cardiovex"),        # a typo, the catalogue's tolerance
    ("only news about Cardiovex, not about Respizan", "cardiovex"),
])
def test_topics_name_products_from_the_catalogue(typed: str, topics: str) -> None:
    assert parse(typed).values.get("topics") == topics


def test_a_language_replaced_is_not_the_one_kept() -> None:
    found = parse("write to me in Dutch rather than English")
    assert found.values["language"] == "nl" and found.instead_of["language"] == "en"


def test_a_question_about_a_product_is_no_preference() -> None:
    assert parse("how should velostatin be stored").values == {}


def test_the_echo_says_what_was_understood() -> None:
    assert feedback.describe("channel", "sms", "whatsapp") == "channel: SMS instead of WhatsApp"
    assert feedback.describe("best_time", "weekdays") == "best time: weekdays only (not at weekends)"
    assert feedback.describe("topics", "glucorel,respiratory") == "topics: Glucorel, respiratory"
    assert feedback.describe("language", feedback.UNSET) == "language: not set"
