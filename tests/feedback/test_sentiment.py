"""Comment sentiment: the lexicon's rules and the embedding fallback."""

from __future__ import annotations

import pytest

from feedback.sentiment import SentimentClassifier, label, load_labelled, score
from knowledge.embedding import HashingEmbedder


@pytest.mark.parametrize(("text", "expected"), [
    ("Very helpful answer, thank you!", "positive"),
    ("The answer about Cardiovex is out of date.", "negative"),
    ("You send me too many messages.", "negative"),
    ("I can't log in to the portal.", "negative"),
    ("Please send the SmPC by email.", "neutral"),
])
def test_lexicon_labels(text: str, expected: str) -> None:
    assert label(score(text)) == expected


def test_negation_flips_a_positive_word() -> None:
    assert score("helpful") > 0.25
    assert score("not helpful") < -0.25
    assert score("wasn't helpful at all") < score("not helpful")


def test_negated_negative_is_only_mildly_positive() -> None:
    assert 0 < score("not bad") < score("good")


def test_the_clause_after_but_counts_more() -> None:
    assert score("quick, but the answer was wrong") < 0
    assert score("the answer was wrong, but the rep fixed it quickly and was very helpful") > 0


def test_scores_stay_in_range() -> None:
    extreme = "terrible useless awful wrong broken waste of time " * 20
    assert -1.0 <= score(extreme) <= -0.9
    assert score("") == 0.0


def test_hybrid_keeps_the_lexicon_opinion_and_asks_the_classifier_otherwise() -> None:
    embedder = HashingEmbedder()
    classifier = SentimentClassifier(embedder).fit()
    texts = ["The information is out of date.", "Grateful for the reply from your colleague."]
    vectors = embedder.embed(texts)
    hybrid = classifier.hybrid(texts, vectors)
    assert hybrid[0] == score(texts[0])
    assert hybrid[1] == classifier.scores(vectors[1:])[0]
    assert all(-1.0 <= v <= 1.0 for v in hybrid)


def test_labelled_sets_are_large_enough_and_disjoint() -> None:
    train = {t for name in ("sentiment_dev.jsonl", "sentiment_test.jsonl") for t, _ in load_labelled(name)}
    holdout = load_labelled("sentiment_holdout.jsonl")
    assert len(holdout) >= 60 and len(train) >= 120
    assert not train & {t for t, _ in holdout}
    assert {lab for _, lab in holdout} == {"negative", "neutral", "positive"}
