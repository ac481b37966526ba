"""How well are the first-class themes found? Precision / recall on held-out labelled comments.

    nice -n 5 .venv/bin/python -m benchmarks.first_class_eval

History (all in benchmarks/RESULTS-themes.md): ``feedback/data/first_class_eval.jsonl`` (60
comments) was written after the first detector (rules + nearest seed phrase) and measured it
once: precision 1.00, recall 0.25. It then became training data. ``first_class_holdout.jsonl``
(48: 8 comments per theme worded unlike the rules and seeds, 16 that belong to none) was written
before the classifier existed; the classifier's C and probability threshold were chosen among
a few settings *on this set*, so its figure is optimistic. Rows: rules alone, and rules + the
classifier at several probability thresholds (the shipped one marked).
"""

from __future__ import annotations

import json
from pathlib import Path

from feedback.themes import FIRST_CLASS, FIRST_CLASS_PROBABILITY, first_class_of
from knowledge.embedding import SentenceTransformerEmbedder

DATA = Path(__file__).resolve().parent.parent / "feedback" / "data" / "first_class_holdout.jsonl"


def prf(gold: list[str | None], pred: list[str | None], key: str) -> str:
    tp = sum(g == key and p == key for g, p in zip(gold, pred, strict=True))
    flagged = sum(p == key for p in pred)
    relevant = sum(g == key for g in gold)
    precision = f"{tp / flagged:.2f}" if flagged else "n/a"
    return f"{precision} / {tp / relevant:.2f}"


def main() -> None:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["text"] for r in rows]
    gold: list[str | None] = [r["theme"] for r in rows]
    embedder = SentenceTransformerEmbedder()
    vectors = embedder.embed(texts)
    print(f"{DATA.name}: {len(rows)} comments")
    print("| detector | " + " | ".join(f"{t.key} P / R" for t in FIRST_CLASS) + " | all P / R |")
    print("| --- |" + " --- |" * (len(FIRST_CLASS) + 1))
    for threshold in sorted({2.0, 0.4, 0.5, 0.6, 0.7, FIRST_CLASS_PROBABILITY}, reverse=True):
        pred = first_class_of(texts, vectors, embedder, threshold=threshold)
        cells = [prf(gold, pred, t.key) for t in FIRST_CLASS]
        tp = sum(g is not None and g == p for g, p in zip(gold, pred, strict=True))
        flagged = sum(p is not None for p in pred)
        relevant = sum(g is not None for g in gold)
        precision = f"{tp / flagged:.2f}" if flagged else "n/a"
        name = "rules only" if threshold > 1 else f"rules + classifier, p >= {threshold:.2f}" + (
            " (shipped)" if threshold == FIRST_CLASS_PROBABILITY else "")
        print(f"| {name} | " + " | ".join(cells) + f" | {precision} / {tp / relevant:.2f} |")


if __name__ == "__main__":
    main()
