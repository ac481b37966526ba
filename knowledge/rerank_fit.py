"""Fit the second stage (``knowledge/rerank.json``) on training data only.

    python -m knowledge.rerank_fit [--target-wrong 0.04] [--drop FEATURE ...] [--dry-run]

Data (no dev or test split is read):

* MedQuAD **train** (``../shared/eval/medquad/train.jsonl``) against the whole MedQuAD library,
  split by topic (the ``focus`` of the expected item, hashed) into three disjoint parts:
  A (50 %) trains the two aspect classifiers — questions labelled with their expected item's
  ``qtype``, bodies of A's items with their own ``qtype`` (labels used here only);
  B-fit (35 %) fits the pair scorer; B-tune (15 %) chooses the threshold.
  Aspect features of B are therefore out-of-sample, as they are on any new library.
* CLINC150 **train** (a 4,000-utterance sample incl. all oos) against the MedQuAD library:
  every candidate is a negative; split 70/30 into fit / tune.
* The project's own tuning sets (``benchmarks/data/retrieval_{demo,covid}_tune.jsonl``, the
  libraries *with* their curated questions), split 70/30, so the stage keeps working where
  items do have curated questions.

The pair scorer is a logistic regression over :data:`knowledge.rerank.FEATURES` (one row per
(question, candidate) in the hybrid top ``POOL``; label = the candidate is acceptable). The
threshold is the lowest P(best) such that on the tune part answered-wrong ≤ ``--target-wrong``
of the MedQuAD tune questions and of the own tuning questions, and CLINC answered ≤ 0.3 %.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from api.settings import REPO_ROOT, Settings
from knowledge.embedding import Vectors
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase
from knowledge.evaluation import EVAL_TODAY, LabelledQuery, read_clinc, read_queries
from knowledge.expand import expand_query
from knowledge.gate import Recipient
from knowledge.library import Library, parse_library
from knowledge.rerank import (
    BODY_WORDS,
    FEATURES,
    QUERY_CHARS,
    RERANK_PATH,
    AspectModel,
    PairScorer,
    Reranker,
    aspect_tokens,
    candidate_features,
)
from knowledge.retrieval import EmbeddingCache

SHARED = REPO_ROOT.parent / "shared" / "eval"
DATA = REPO_ROOT / "benchmarks" / "data"
MAX_CLINC = 0.003
DROP_CLASSES = {"support groups"}


def _bucket(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def fit_aspects(texts: Sequence[str], labels: Sequence[str], limit: int, min_df: int = 3,
                c: float = 4.0, prune: float = 0.05) -> AspectModel:
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    docs = [sorted(set(aspect_tokens(t, limit))) for t in texts]
    df: dict[str, int] = {}
    for d in docs:
        for tok in d:
            df[tok] = df.get(tok, 0) + 1
    vocab = {t: i for i, t in enumerate(sorted(t for t, n in df.items() if n >= min_df))}
    rows, cols, vals = [], [], []
    for r, d in enumerate(docs):
        norm = 1.0 / np.sqrt(len(d)) if d else 0.0
        for tok in d:
            if tok in vocab:
                rows.append(r)
                cols.append(vocab[tok])
                vals.append(norm)
    x = sparse.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab)))
    model = LogisticRegression(C=c, max_iter=3000)
    model.fit(x, list(labels))
    classes = tuple(str(k) for k in model.classes_)
    coef, bias = model.coef_, model.intercept_
    if len(classes) == 2:  # sklearn keeps one row for two classes: the same softmax with ±half of it
        coef, bias = np.vstack([-coef / 2, coef / 2]), np.concatenate([-bias / 2, bias / 2])
    w = coef.T.astype(np.float32)   # vocab × classes
    keep = np.abs(w).max(axis=1) >= prune
    kept = [t for t, i in vocab.items() if keep[i]]
    new_vocab = {t: j for j, t in enumerate(kept)}
    weights = np.round(w[[vocab[t] for t in kept]], 4) if kept else np.zeros((0, len(classes)), np.float32)
    return AspectModel(classes, new_vocab, weights, np.round(bias, 4).astype(np.float32), limit)


@dataclass
class Pool:
    group: str                       # medquad-fit, medquad-tune, clinc-fit, ...
    answerable: bool
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.bool_]


def pools_for(lkb: LibraryKnowledgeBase, reranker: Reranker, queries: Sequence[tuple[LabelledQuery, str]],
              cache: EmbeddingCache) -> list[Pool]:
    retriever = lkb.kb.retriever
    texts = list(dict.fromkeys(t for q, _ in queries for t in (q.text, expand_query(q.text))))
    embedded = cache.embed(texts, retriever.embedder)
    row = {t: i for i, t in enumerate(texts)}

    def vectors(text: str) -> Vectors:
        return embedded[row[text]:row[text] + 1]

    vec: Callable[[str], Vectors] = vectors
    memo: dict[int, npt.NDArray[np.float32]] = {}
    masks: dict[tuple[str, str], npt.NDArray[np.bool_]] = {}
    out = []
    for q, group in queries:
        key = (q.market, q.audience)
        if key not in masks:
            allowed = lkb.allowed(Recipient(q.market, q.audience, verified=True), EVAL_TODAY)
            masks[key] = np.fromiter(((d.id, d.version) in allowed for d in retriever.docs), dtype=bool,
                                     count=len(retriever.docs))
        index, x = candidate_features(reranker, retriever, memo, q.text, masks[key], vec)
        y = np.array([retriever.docs[i].id in q.expected for i in index.tolist()], dtype=bool)
        out.append(Pool(group, bool(q.expected), x, y))
    return out


def evaluate(pools: Sequence[Pool], scorer: PairScorer, threshold: float) -> dict[str, float]:
    """answered right / wrong as a share of the pools (queries); top-1 after re-scoring."""
    right = wrong = top1 = 0
    for p in pools:
        if len(p.y) == 0:
            continue
        prob = scorer.probability(p.x)
        j = int(np.argmax(prob))
        ok = bool(p.y[j])
        top1 += ok
        if prob[j] >= threshold:
            right += ok
            wrong += not ok
    n = max(len(pools), 1)
    return {"right": right / n, "wrong": wrong / n, "top1": top1 / n}


def choose_threshold(tune: dict[str, list[Pool]], scorer: PairScorer, target: float) -> float:
    best = 0.99
    for t in np.round(np.arange(0.30, 0.995, 0.005), 3)[::-1]:
        ok = all(evaluate(ps, scorer, float(t))["wrong"] <= (MAX_CLINC if g == "clinc" else target)
                 for g, ps in tune.items() if ps)
        if not ok:
            break
        best = float(t)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-wrong", type=float, default=0.04)
    parser.add_argument("--drop", nargs="*", default=[], help="features to leave out (ablation)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write rerank.json")
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--b-topics-library", action="store_true",
                        help="MedQuAD library = the items of the B topics only (development aid)")
    args = parser.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    settings = Settings()
    cache = EmbeddingCache(settings.resolved_index_dir / "queries", "all-MiniLM-L6-v2")
    lib_path = SHARED / "medquad" / "library.jsonl"
    raw = [json.loads(line) for line in lib_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    qtype = {d["id"]: d["qtype"] for d in raw}
    focus = {d["id"]: d.get("focus") or d["title"] for d in raw}
    train = read_queries(SHARED / "medquad" / "train.jsonl")

    def part(q: LabelledQuery) -> str:
        b = _bucket(focus[sorted(q.expected)[0]])
        return "A" if b < 0.5 else ("fit" if b < 0.85 else "tune")

    parts = {q.id: part(q) for q in train}
    a_queries = [q for q in train if parts[q.id] == "A"]
    a_items = {e for q in a_queries for e in q.expected}
    a_foci = {focus[e] for e in a_items}
    qa_texts = [(q.text[:QUERY_CHARS], qtype[sorted(q.expected)[0]]) for q in a_queries]
    qa_texts = [(t, lab) for t, lab in qa_texts if lab not in DROP_CLASSES]
    ba = [(d["body"], d["qtype"]) for d in raw if focus[d["id"]] in a_foci and d["qtype"] not in DROP_CLASSES]
    print(f"aspect models: {len(qa_texts)} questions, {len(ba)} bodies (train part A)", flush=True)
    q_model = fit_aspects([t for t, _ in qa_texts], [lab for _, lab in qa_texts], limit=400)
    b_model = fit_aspects([t for t, _ in ba], [lab for _, lab in ba], limit=BODY_WORDS, min_df=5, prune=0.3)
    print(f"  vocab kept: questions {len(q_model.vocab)}, bodies {len(b_model.vocab)}", flush=True)
    dummy = PairScorer(FEATURES, tuple(0.0 for _ in FEATURES), 0.0, 0.5)
    stage = Reranker(q_model, b_model, dummy, {})

    kb_dir = settings.resolved_index_dir
    library = parse_library(lib_path)
    if args.b_topics_library:
        b_foci = {focus[e] for q in train if parts[q.id] != "A" for e in q.expected}
        library = Library([i for i in library.items if focus[i.id] in b_foci], library.products)
    med = LibraryKnowledgeBase(library, KnowledgeBase(kb_dir))
    b_queries = [(q, f"medquad-{parts[q.id]}") for q in train if parts[q.id] != "A"]
    clinc = read_clinc(SHARED / "clinc150" / "train.jsonl", limit=4000)
    c_queries = [(q, "clinc-fit" if _bucket(q.text) < 0.7 else "clinc-tune") for q in clinc]
    pools = pools_for(med, stage, b_queries + c_queries, cache)
    print(f"medquad + clinc pools: {len(pools)}", flush=True)
    for name, lib in (("demo", REPO_ROOT / "knowledge" / "content"),
                      ("covid", SHARED / "covid_faq" / "library.jsonl")):
        lkb = LibraryKnowledgeBase(parse_library(lib), KnowledgeBase(kb_dir))
        own = read_queries(DATA / f"retrieval_{name}_tune.jsonl")
        pools += pools_for(lkb, stage, [(q, "own-fit" if _bucket(q.id) < 0.7 else "own-tune") for q in own], cache)

    features = tuple(f for f in FEATURES if f not in args.drop)
    cols = [FEATURES.index(f) for f in features]
    fit = [p for p in pools if p.group.endswith("-fit") and len(p.y)]
    x = np.vstack([p.x[:, cols] for p in fit])
    y = np.concatenate([p.y for p in fit])
    model = LogisticRegression(C=args.c, max_iter=5000)
    model.fit(x, y)
    scorer = PairScorer(features, tuple(round(float(c), 5) for c in model.coef_[0]),
                        round(float(model.intercept_[0]), 5), 0.5)
    tune = {g: [p for p in pools if p.group == f"{g}-tune"] for g in ("medquad", "clinc", "own")}
    threshold = choose_threshold(tune, scorer, args.target_wrong)
    scorer = PairScorer(scorer.features, scorer.coef, scorer.intercept, threshold)
    print(f"features {features}\ncoef {scorer.coef}\nintercept {scorer.intercept} threshold {threshold}")
    report: dict[str, object] = {}
    for g, ps in tune.items():
        r = evaluate(ps, scorer, threshold)
        report[g] = {k: round(v, 4) for k, v in r.items()} | {"n": len(ps)}
        print(f"  tune {g}: n={len(ps)} right {r['right']:.3f} wrong {r['wrong']:.3f} top1 {r['top1']:.3f}")
    if args.dry_run:
        return 0
    inputs = hashlib.sha256()
    for path in (lib_path, SHARED / "medquad" / "train.jsonl", SHARED / "clinc150" / "train.jsonl",
                 DATA / "retrieval_demo_tune.jsonl", DATA / "retrieval_covid_tune.jsonl"):
        inputs.update(path.read_bytes())
    meta: dict[str, object] = {
        "fitted_by": "python -m knowledge.rerank_fit", "target_wrong": args.target_wrong,
        "inputs_sha256": inputs.hexdigest(), "tune": report,
        "fitted_on": ["../shared/eval/medquad/train.jsonl (topic-split: A aspects, B pair scorer + threshold)",
                      "../shared/eval/clinc150/train.jsonl (4000 sample)",
                      "benchmarks/data/retrieval_{demo,covid}_tune.jsonl"],
    }
    RERANK_PATH.write_text(json.dumps(Reranker(q_model, b_model, scorer, meta).to_json(), separators=(",", ":"))
                           + "\n", encoding="utf-8")
    print(f"wrote {RERANK_PATH} ({RERANK_PATH.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
