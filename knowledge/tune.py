"""Fit the answer policy (``knowledge/policy.json``) on tuning data only.

    python -m knowledge.tune

Tuning data: ``benchmarks/data/retrieval_{demo,covid}_tune.jsonl`` and a sample of
CLINC150 *train*. The held-out sets (``*_test.jsonl``, CLINC150 val) are never read here.
Steps:

1. Fusion weights of the hybrid score (:class:`knowledge.retrieval.Fusion`): a conditional
   logit over each answerable tuning query's candidate pool (softmax of the weighted signals,
   maximising the probability of the acceptable items), weights ≥ 0, both libraries pooled.
   Printed: tuning recall@1 per library, and each library scored with weights fitted on the
   *other* library only (a check that the weights transfer to content they never saw).
2. One logistic calibrator per method (P(top-1 correct)) and its threshold: the lowest one
   that keeps off-topic escalation ≥ 99.5% and wrong answers ≤ 3% of answerable tuning
   queries — a wrong answer costs more than an escalation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from api.settings import REPO_ROOT, Settings
from knowledge.embedding import Vectors
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase
from knowledge.evaluation import EVAL_TODAY, LabelledQuery, Outcome, read_clinc, read_queries, run
from knowledge.gate import Recipient
from knowledge.library import parse_library
from knowledge.policy import POLICY_PATH, AnswerPolicy, Calibrator
from knowledge.retrieval import METHODS, EmbeddingCache, Fusion

SHARED = REPO_ROOT.parent / "shared"
DATA = REPO_ROOT / "benchmarks" / "data"
LIBRARIES = {
    "demo": (REPO_ROOT / "knowledge" / "content", DATA / "retrieval_demo_tune.jsonl"),
    "covid": (SHARED / "eval" / "covid_faq" / "library.jsonl", DATA / "retrieval_covid_tune.jsonl"),
}
MAX_OOS_ANSWERED = 0.005
MAX_WRONG = 0.03
SOFTMAX_SCALE = 10.0  # signals are on a 0..1 scale; the logit needs a sharper softmax
L2 = 0.01

Pool = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]  # (signals × 5, acceptable?)


def candidate_pools(lkb: LibraryKnowledgeBase, queries: Sequence[LabelledQuery], cache: EmbeddingCache
                    ) -> list[Pool]:
    """Per answerable query: the hybrid candidate pool's signal matrix and which rows are acceptable."""
    from knowledge.expand import expand_query

    retriever = lkb.kb.retriever
    answerable = [q for q in queries if q.expected]
    texts = list(dict.fromkeys(expand_query(q.text) for q in answerable))
    embedded = cache.embed(texts, retriever.embedder)
    row = {t: i for i, t in enumerate(texts)}

    def vectors(text: str) -> Vectors:
        return embedded[row[text]:row[text] + 1]

    pools: list[Pool] = []
    for q in answerable:
        allowed = lkb.allowed(Recipient(q.market, q.audience, verified=True), EVAL_TODAY)
        mask = np.fromiter(((d.id, d.version) in allowed for d in retriever.docs), dtype=bool,
                           count=len(retriever.docs))
        sig = retriever.signals(q.text, mask, vectors=vectors)
        gold = np.array([retriever.docs[i].id in q.expected for i in sig.index.tolist()], dtype=bool)
        pools.append((sig.matrix(), gold))
    return pools


def _nll(w: npt.NDArray[np.float64], pools: Sequence[Pool]) -> float:
    total = 0.0
    for x, gold in pools:
        if not gold.any():
            continue  # no acceptable item in the pool: no weights can fix it
        s = SOFTMAX_SCALE * (x @ w)
        top = float(s.max())
        total += top + float(np.log(np.exp(s - top).sum()))
        g = s[gold]
        total -= float(g.max()) + float(np.log(np.exp(g - g.max()).sum()))
    return total / max(len(pools), 1) + L2 * float(w @ w)


def fit_fusion(pools: Sequence[Pool]) -> Fusion:
    from scipy.optimize import minimize

    x0 = np.array([0.7, 0.3, 0.0, 0.1, 0.0])
    res = minimize(_nll, x0, args=(pools,), method="L-BFGS-B", bounds=[(0.0, None)] * 5)
    w = res.x
    dense = float(w[:3].sum()) or 1.0
    q, b, best, lex, raw = (round(float(v) / dense, 4) for v in w)
    return Fusion(question=q, body=b, best=best, lexical=lex, lexical_raw=raw)


def pool_recall_at_1(pools: Sequence[Pool], fusion: Fusion) -> float:
    w = np.array([fusion.question, fusion.body, fusion.best, 0.0, 0.0])
    w /= max(float(w.sum()), 1e-9)
    w[3], w[4] = fusion.lexical, fusion.lexical_raw
    hits = sum(bool(gold[int(np.argmax(x @ w))]) for x, gold in pools if len(gold))
    return hits / max(len(pools), 1)


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

    pools = {name: candidate_pools(lkb, tune[name], query_cache) for name, lkb in kbs.items()}
    fusion = fit_fusion([p for ps in pools.values() for p in ps])
    print(f"fusion (pooled): {fusion.as_dict()}")
    for name, ps in pools.items():
        other = fit_fusion([p for o, qs in pools.items() if o != name for p in qs])
        print(f"  {name}: tuning recall@1 {pool_recall_at_1(ps, fusion):.3f} with the pooled weights, "
              f"{pool_recall_at_1(ps, other):.3f} with weights fitted on the other library only "
              f"({len(ps)} answerable queries)")

    outcomes: dict[str, list[Outcome]] = {m: [] for m in METHODS}
    for name, lkb in kbs.items():
        lkb.kb.retriever.fusion = fusion
        for m, outs in run(lkb, tune[name] + clinc, cache=query_cache).items():
            outcomes[m].extend(outs)
            answerable = [o for o in outs if o.answerable]
            print(f"  {name} {m}: tuning recall@1 {sum(o.top1_correct for o in answerable) / len(answerable):.3f}")
    calibrators = {method: _fit(outs) for method, outs in outcomes.items()}
    for method, cal in calibrators.items():
        print(f"{method}: coef={[round(c, 3) for c in cal.coef]} intercept={cal.intercept:.3f} "
              f"threshold={cal.threshold}")
    policy = AnswerPolicy(fusion.lexical, calibrators, fusion)
    data = policy.to_json()
    data["tuned_on"] = [str(q.relative_to(REPO_ROOT)) for _, q in LIBRARIES.values()] + [
        "../shared/eval/clinc150/train.jsonl (2000-utterance sample incl. all 100 oos)"]
    POLICY_PATH.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {POLICY_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
