"""Replies shaped for WhatsApp: split at sentence ends within 1,600 characters, numbered options."""

from __future__ import annotations

from api.channels.whatsapp.text import (
    WHATSAPP_BODY_LIMIT,
    chosen_option,
    numbered_options,
    speaker_line,
    split_body,
    with_options,
)


def test_a_short_message_is_one_part_unchanged() -> None:
    assert split_body("Hello.\n\nSecond paragraph.") == ["Hello.\n\nSecond paragraph."]


def test_a_long_message_is_split_at_sentence_ends_within_the_limit() -> None:
    sentences = [f"Sentence number {i} says something useful about dosing." for i in range(120)]
    text = " ".join(sentences)
    parts = split_body(text)
    assert len(parts) > 1
    assert all(len(p) <= WHATSAPP_BODY_LIMIT for p in parts)
    assert all(p.endswith(".") for p in parts)  # no sentence is cut in two
    assert " ".join(parts) == text  # nothing lost, nothing added


def test_paragraph_breaks_inside_a_part_are_kept() -> None:
    text = ("A" * 900 + ".") + "\n\n" + ("B" * 500 + ".") + "\n\n" + ("C" * 900 + ".")
    parts = split_body(text)
    assert parts == ["A" * 900 + ".\n\n" + "B" * 500 + ".", "C" * 900 + "."]


def test_a_sentence_longer_than_the_limit_is_cut_at_spaces_then_hard() -> None:
    words = " ".join(["word"] * 700)  # 3,499 characters, no sentence end
    parts = split_body(words)
    assert all(len(p) <= WHATSAPP_BODY_LIMIT for p in parts)
    assert " ".join(parts) == words
    unbroken = "x" * 4000
    assert [len(p) for p in split_body(unbroken)] == [1600, 1600, 800]


def test_buttons_become_numbered_options_and_a_number_picks_one() -> None:
    options = numbered_options([{"title": "Talk to a person", "payload": "/request_human"},
                                {"title": "Request samples", "payload": "/request_samples"}])
    body = with_options("How can I help?", options)
    assert body == "How can I help?\n\nReply 1 for Talk to a person\nReply 2 for Request samples"
    assert chosen_option("2", options) == options[1]
    assert chosen_option(" 1. ", options) == options[0]
    assert chosen_option("talk to a person", options) == options[0]
    assert chosen_option("3", options) is None
    assert chosen_option("12 tablets a day", options) is None
    assert chosen_option("1", None) is None


def test_a_staff_message_names_its_speaker_and_the_bot_does_not() -> None:
    from api.conversations.models import Message

    answer = Message(body="Our data in adolescents are limited.", sender_label="Medical Information · MI-2026-000077")
    assert speaker_line(answer) + answer.body == ("*Medical Information · MI-2026-000077*\n"
                                                  "Our data in adolescents are limited.")
    assert speaker_line(Message(body="Hello")) == ""
