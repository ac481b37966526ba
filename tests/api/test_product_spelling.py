"""Misspelt product and generic names are read as the catalogue's names before Rasa sees the text."""

from __future__ import annotations

import pytest

from api.conversations import spelling


@pytest.mark.parametrize(("typed", "read"), [
    ("is cardiovx ok with grapefruit", "is cardiovex ok with grapefruit"),
    ("Velostatine starting dose?", "velostatin starting dose?"),
    ("how to store respizn pens", "how to store respizan pens"),
    ("ferlaglutid titration", "ferlaglutide titration"),
    ("resipzan", "respizan"),            # a swapped pair counts as one edit
    ("glucorels in stock?", "glucorel in stock?"),
])
def test_misspelt_names_are_corrected(typed: str, read: str) -> None:
    assert spelling.correct(typed) == read


@pytest.mark.parametrize("text", [
    "blood glucose targets", "cardiac output", "respiratory rate", "Cardiovex is fine", "cardio-vex",
    "my patient Carla", "velo", "zel",
])
def test_ordinary_words_and_exact_names_are_left_alone(text: str) -> None:
    assert spelling.correct(text) == text


def test_distance_counts_a_transposition_once_and_stops_early() -> None:
    assert spelling.distance("ab", "ba") == 1
    assert spelling.distance("kitten", "sitting") == 3
    assert spelling.distance("a", "abcdefgh", limit=2) == 3
