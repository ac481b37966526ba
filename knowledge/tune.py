"""Fit the answer policy (``knowledge/policy.json``) on tuning data only.

    python -m knowledge.tune

Tuning data: ``benchmarks/data/retrieval_{demo,covid}_tune.jsonl`` and a sample of
CLINC150 *train*. The held-out sets (``*_test.jsonl``, CLINC150 val) are never read here.
Steps: pick the dense/BM25 fusion weight by tuning recall@1; fit one logistic
calibrator per method (P(top-1 correct)); choose each threshold as the lowest one
that keeps off-topic escalation ≥ 99.5% and wrong answers ≤ 3% of answerable tuning
queries — a wrong answer costs more than an escalation.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from api.settings import REPO_ROOT, Settings
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase
from knowledge.evaluation import Outcome, read_clinc, read_queries, run
from knowledge.library import parse_library
from knowledge.policy import POLICY_PATH, AnswerPolicy, Calibrator
from knowledge.retrieval import METHODS, EmbeddingCache

SHARED = REPO_ROOT.parent / "shared"
DATA = REPO_ROOT / "benchmarks" / "data"
LIBRARIES = {
    "demo": (REPO_ROOT / "knowledge" / "content", DATA / "retrieval_demo_tune.jsonl"),
    "covid": (SHARED / "eval" / "covid_faq" / "library.jsonl", DATA / "retrieval_covid_tune.jsonl"),
}
MAX_OOS_ANSWERED = 0.005
MAX_WRONG = 0.03


def _fit(outcomes: list[Outcome]) -> Calibrator:
    from sklearn.linear_model import LogisticRegression

    x = np.array([o.features for o in outcomes], dtype=np.float64)
    y = np.array([o.top1_correct for o in outcomes], dtype=np.int64)
    model = LogisticRegression(class_weight="balanced", C=10.0, max_iter=2000)
    model.fit(x, y)
    coef = tuple(float(c) for c in model.coef_[0])
    intercept = float(model.intercept_[0])
    cal = Calibrator(coef, intercept, 0.5)
    probs = np.array([cal.probability(o.features) for o in outcomes])
    answerable = np.array([o.answerable for o in outcomes])
    offtopic = np.array([o.query.id.startswith("clinc-") for o in outcomes])
    correct = y.astype(bool)
    best: tuple[int, float] | None = None
    for t in np.unique(np.round(probs, 4)):
        answered = probs >= t
        oos_rate = answered[offtopic].mean() if offtopic.any() else 0.0
        wrong = (answered & ~correct & answerable).sum() / max(answerable.sum(), 1)
        wrong_unanswerable = (answered & ~answerable & ~offtopic).sum()
        if oos_rate <= MAX_OOS_ANSWERED and wrong <= MAX_WRONG and wrong_unanswerable <= 1:
            good = int((answered & correct).sum())
            if best is None or good > best[0]:
                best = (good, float(t))
    threshold = best[1] if best else 0.99
    return Calibrator(coef, intercept, round(threshold, 4))


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    query_cache = EmbeddingCache(settings.resolved_index_dir / "queries", "all-MiniLM-L6-v2")
    clinc = read_clinc(SHARED / "eval" / "clinc150" / "train.jsonl", limit=2000)
    kbs = {name: LibraryKnowledgeBase(parse_library(lib), KnowledgeBase(settings.resolved_index_dir))
           for name, (lib, _) in LIBRARIES.items()}
    tune = {name: read_queries(q) for name, (_, q) in LIBRARIES.items()}

    best_w, best_r1 = 0.1, -1.0
    for w in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3):
        hits = total = 0
        for name, lkb in kbs.items():
            lkb.kb.retriever.lexical_weight = w
            outs = run(lkb, [q for q in tune[name] if q.expected], methods=("hybrid",), cache=query_cache)["hybrid"]
            hits += sum(o.top1_correct for o in outs)
            total += len(outs)
        r1 = hits / total
        print(f"lexical_weight={w:.2f} tuning recall@1={r1:.3f}")
        if r1 > best_r1 + 1e-9:
            best_w, best_r1 = w, r1
    print(f"chosen lexical_weight={best_w}")

    outcomes: dict[str, list[Outcome]] = {m: [] for m in METHODS}
    for name, lkb in kbs.items():
        lkb.kb.retriever.lexical_weight = best_w
        for m, outs in run(lkb, tune[name] + clinc, cache=query_cache).items():
            outcomes[m].extend(outs)
    calibrators = {method: _fit(outs) for method, outs in outcomes.items()}
    for method, cal in calibrators.items():
        print(f"{method}: coef={[round(c, 3) for c in cal.coef]} intercept={cal.intercept:.3f} "
              f"threshold={cal.threshold}")
    policy = AnswerPolicy(best_w, calibrators)
    data = policy.to_json()
    data["tuned_on"] = [str(q.relative_to(REPO_ROOT)) for _, q in LIBRARIES.values()] + [
        "../shared/eval/clinc150/train.jsonl (2000-utterance sample incl. all 100 oos)"]
    POLICY_PATH.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {POLICY_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
