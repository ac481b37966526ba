"""Accuracy of feedback.sentiment on labelled HCP feedback sentences.

    nice -n 5 .venv/bin/python -m benchmarks.sentiment_eval [--errors]

Three scorers on ``feedback/data/sentiment_holdout.jsonl`` (60 sentences, written after the
lexicon was frozen; never tuned or trained on): the lexicon alone, the embedding classifier
(trained on ``sentiment_dev`` + ``sentiment_test``, 130 sentences) and the hybrid the theme
job uses. For reference the lexicon's accuracy on its own tuning sets is printed too.
Labels: negative / neutral / positive.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence

from feedback.sentiment import SentimentClassifier, label, load_labelled, score

LABELS = ("negative", "neutral", "positive")


def report(name: str, rows: Sequence[tuple[str, str]], values: Sequence[float], *, errors: bool) -> float:
    confusion: Counter[tuple[str, str]] = Counter()
    for (_, gold), value in zip(rows, values, strict=True):
        confusion[(gold, label(value))] += 1
    n = len(rows)
    accuracy = sum(v for (g, p), v in confusion.items() if g == p) / n
    polarity = sum(v for (g, p), v in confusion.items() if (g == "negative") == (p == "negative")) / n
    print(f"{name}: n={n} accuracy(3-class)={accuracy:.3f} negative-vs-rest={polarity:.3f}")
    print("    gold \\ predicted " + " ".join(f"{p:>9}" for p in LABELS))
    for gold in LABELS:
        print(f"    {gold:>16} " + " ".join(f"{confusion[(gold, p)]:>9}" for p in LABELS))
    if errors:
        for (text, gold), value in zip(rows, values, strict=True):
            if label(value) != gold:
                print(f"      {gold:>8} -> {label(value):<8} {value:+.2f}  {text}")
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--errors", action="store_true", help="list the misclassified sentences")
    args = parser.parse_args()
    for name in ("sentiment_dev.jsonl", "sentiment_test.jsonl"):
        rows = load_labelled(name)
        report(f"lexicon on {name} (tuning set)", rows, [score(t) for t, _ in rows], errors=False)
    from knowledge.embedding import SentenceTransformerEmbedder

    holdout = load_labelled("sentiment_holdout.jsonl")
    texts = [t for t, _ in holdout]
    classifier = SentimentClassifier(SentenceTransformerEmbedder()).fit()
    vectors = classifier.embedder.embed(texts)
    report("lexicon on holdout", holdout, [score(t) for t in texts], errors=args.errors)
    report("embedding classifier on holdout", holdout, classifier.scores(vectors), errors=args.errors)
    report("hybrid on holdout", holdout, classifier.hybrid(texts, vectors), errors=args.errors)


if __name__ == "__main__":
    main()
