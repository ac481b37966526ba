"""Fit the second stage (``knowledge/rerank.json``) on training data only.

    python -m knowledge.rerank_fit [--target-wrong 0.04] [--drop FEATURE ...] [--dry-run]

Data (no dev or test split is read, except the covid_faq TUNE half named below):

* MedQuAD **train** (``../shared/eval/medquad/train.jsonl``) against the whole MedQuAD library,
  split by topic (the ``focus`` of the expected item, hashed) into disjoint parts:
  A (50 %) trains the two aspect classifiers — questions labelled with their expected item's
  ``qtype``, bodies of A's items with their own ``qtype`` (labels used here only);
  fit (15 %) fits the pair scorer; tune (10 %) chooses the threshold; 25 % spare (unused).
  Aspect features of B are therefore out-of-sample, as they are on any new library.
* CLINC150 **train** (a 4,000-utterance sample incl. all oos) against the MedQuAD library:
  every candidate is a negative; split 70/30 into fit / tune.
* The project's own tuning sets (``benchmarks/data/retrieval_{demo,covid}_tune.jsonl``, the
  libraries *with* their curated questions), split 70/30, so the stage keeps working where
  items do have curated questions.

* The same own tuning queries against those libraries' bodies alone (questions removed, and
  covid's titles, which are its questions): body matching on text that is not MedQuAD's.
* covid_faq body matching, **TUNE half only** (:func:`knowledge.evaluation.covid_body`: the FAQ's
  own questions against its bodies; the half fixed by a hash of the item id): real wording nobody
  here wrote, used **for the threshold only**, never for the scorer's weights. The REPORT half is
  read by nothing here (``benchmarks/retrieval.py --sets covid-body-report`` reports on it).

The pair scorer is a logistic regression over :data:`knowledge.rerank.FEATURES` (one row per
(question, candidate) in the hybrid top ``POOL``; label = the candidate is acceptable). The
threshold is the lowest P(best) such that on the tune part answered-wrong ≤ ``--target-wrong``
of the MedQuAD tune questions, of the own body-matching tune questions and of the covid_faq TUNE
half, and CLINC answered ≤ 0.3 %. (When the best candidate has curated questions, ``KnowledgeBase.decide`` leaves the
decision to the calibrator fitted on curated-question libraries, so those are not used here.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from api.settings import REPO_ROOT, Settings
from knowledge.embedding import Vectors
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase
from knowledge.evaluation import EVAL_TODAY, LabelledQuery, covid_body, read_clinc, read_queries
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
DROPPED = ("curated", "curated_hybrid", "curated_question", "curated_gap")
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


def evaluate(pools: Sequence[Pool], scorer: PairScorer, threshold: float | None) -> dict[str, float]:
    """answered right / wrong as a share of the pools (queries); top-1 after re-scoring.

    ``threshold``: one bar for every question; ``None``: the scorer's own (``threshold_for``).
    """
    if threshold is not None:
        scorer = replace(scorer, threshold=threshold, vague_threshold=None)
    right = wrong = top1 = 0
    for p in pools:
        if len(p.y) == 0:
            continue
        prob = scorer.probability(p.x)
        j = int(np.argmax(prob))
        ok = bool(p.y[j])
        top1 += ok
        if prob[j] >= scorer.threshold_for(p.x[j]):
            right += ok
            wrong += not ok
    n = max(len(pools), 1)
    return {"right": right / n, "wrong": wrong / n, "top1": top1 / n}


def meets(tune: dict[str, list[Pool]], scorer: PairScorer, threshold: float, target: float) -> bool:
    return all(evaluate(ps, scorer, threshold)["wrong"] <= (MAX_CLINC if g == "clinc" else target)
               for g, ps in tune.items() if ps)


def choose_threshold(tune: dict[str, list[Pool]], scorer: PairScorer, target: float) -> float:
    """The lowest threshold on the grid at and above which every tune group meets its wrong-answer bound."""
    best = 0.99
    for t in np.round(np.arange(0.30, 0.995, 0.005), 3)[::-1]:
        if not meets(tune, scorer, float(t), target):
            break
        best = float(t)
    return best


def is_vague(p: Pool, cut: float) -> bool:
    """The question's aspect confidence (the same on every row of its pool) is below ``cut``."""
    return len(p.y) > 0 and float(p.x[0, FEATURES.index("aspect_conf")]) < cut


def choose_segmented(tune: dict[str, list[Pool]], scorer: PairScorer, target: float, cut: float
                     ) -> PairScorer:
    """One bar for questions the aspect model recognises, another for vague ones; each segment of each
    tune group within the target on its own (so the whole group is too)."""
    clear = {g: [p for p in ps if not is_vague(p, cut)] for g, ps in tune.items()}
    vague = {g: [p for p in ps if is_vague(p, cut)] for g, ps in tune.items()}
    return replace(scorer, threshold=choose_threshold(clear, scorer, target), vague_below=cut,
                   vague_threshold=choose_threshold(vague, scorer, target))


def trade_off(tune: dict[str, list[Pool]], scorer: PairScorer, thresholds: Sequence[float]) -> str:
    """A markdown table: answered right / wrong of each tune group at each threshold."""
    groups = [g for g, ps in tune.items() if ps]
    lines = ["| threshold | " + " | ".join(f"{g} (n={len(tune[g])}) right / wrong" for g in groups) + " |",
             "|---|" + "---|" * len(groups)]
    for t in thresholds:
        cells = []
        for g in groups:
            r = evaluate(tune[g], scorer, float(t))
            cells.append(f"{100 * r['right']:.1f}% / {100 * r['wrong']:.{2 if g == 'clinc' else 1}f}%")
        lines.append(f"| {t:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-wrong", type=float, default=0.04)
    parser.add_argument("--drop", nargs="*", default=list(DROPPED),
                        help=f"features to leave out (default: {', '.join(DROPPED)}, dropped on tuning figures)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write rerank.json")
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--pools", type=Path, default=None,
                        help="development aid: read the candidate pools from this pickle, or write them there")
    parser.add_argument("--vague-below", type=float, default=None,
                        help="questions with aspect confidence below this get their own threshold (default: one)")
    parser.add_argument("--b-topics-library", action="store_true",
                        help="MedQuAD library = the items of the fit + tune topics only (fewer distractors)")
    args = parser.parse_args(argv)
    argv_kept = [a for a in (argv or []) if a != "--pools" and a != str(args.pools)]  # the pickle is a dev aid
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
        return "A" if b < 0.5 else "fit" if b < 0.65 else "tune" if b < 0.75 else "spare"

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

    if args.pools is not None and args.pools.exists():  # a development aid: same data, same aspect models
        pools: list[Pool] = pickle.loads(args.pools.read_bytes())
        print(f"pools read from {args.pools}: {len(pools)}", flush=True)
    else:
        kb_dir = settings.resolved_index_dir
        library = parse_library(lib_path)
        if args.b_topics_library:
            b_foci = {focus[e] for q in train if parts[q.id] in ("fit", "tune") for e in q.expected}
            library = Library([i for i in library.items if focus[i.id] in b_foci], library.products)
        med = LibraryKnowledgeBase(library, KnowledgeBase(kb_dir))
        b_queries = [(q, f"medquad-{parts[q.id]}") for q in train if parts[q.id] in ("fit", "tune")]
        clinc = read_clinc(SHARED / "clinc150" / "train.jsonl", limit=4000)
        c_queries = [(q, "clinc-fit" if _bucket(q.text) < 0.7 else "clinc-tune") for q in clinc]
        pools = pools_for(med, stage, b_queries + c_queries, cache)
        print(f"medquad + clinc pools: {len(pools)}", flush=True)
        for name, lib in (("demo", REPO_ROOT / "knowledge" / "content"),
                          ("covid", SHARED / "covid_faq" / "library.jsonl")):
            lkb = LibraryKnowledgeBase(parse_library(lib), KnowledgeBase(kb_dir))
            own = read_queries(DATA / f"retrieval_{name}_tune.jsonl")
            pools += pools_for(lkb, stage, [(q, "own-fit" if _bucket(q.id) < 0.7 else "own-tune") for q in own], cache)
            # the same tuning queries against the library's bodies alone (questions removed; covid's
            # titles are its questions, so those go too): body matching on text that is not MedQuAD's
            lib_body = parse_library(lib)
            lib_body = Library([replace(i, questions=(), title="" if name == "covid" else i.title)
                                for i in lib_body.items], lib_body.products)
            body_kb = LibraryKnowledgeBase(lib_body, KnowledgeBase(kb_dir))
            pools += pools_for(body_kb, stage, [(q, "ownbody-fit" if _bucket(q.id) < 0.7 else "ownbody-tune")
                                                for q in own], cache)
            if name == "covid":  # the FAQ's own questions, TUNE half: threshold only (no "-fit" group)
                faq_lib, faq_tune = covid_body(lib, "tune")
                assert [i.body for i in faq_lib.items] == [i.body for i in lib_body.items]
                pools += pools_for(body_kb, stage, [(q, "covidfaq-tune") for q in faq_tune], cache)
        if args.pools is not None:
            args.pools.write_bytes(pickle.dumps(pools))

    features = tuple(f for f in FEATURES if f not in args.drop)
    cols = [FEATURES.index(f) for f in features]
    fit = [p for p in pools if p.group.endswith("-fit") and len(p.y)]
    x = np.vstack([p.x[:, cols] for p in fit])
    y = np.concatenate([p.y for p in fit])
    # The own tuning queries are few next to MedQuAD's: weight them so each source counts alike.
    n_med = sum(len(p.y) for p in fit if p.group.startswith("medquad"))
    n_own = max(sum(len(p.y) for p in fit if p.group.startswith("own")), 1) * 2
    weight = np.concatenate([np.full(len(p.y), n_med / n_own if p.group.startswith("own") else 1.0) for p in fit])
    model = LogisticRegression(C=args.c, max_iter=5000)
    model.fit(x, y, sample_weight=weight)
    scorer = PairScorer(features, tuple(round(float(c), 5) for c in model.coef_[0]),
                        round(float(model.intercept_[0]), 5), 0.5)
    tune = {g: [p for p in pools if p.group == f"{g}-tune"] for g in ("medquad", "clinc", "ownbody", "covidfaq")}
    threshold = choose_threshold(tune, scorer, args.target_wrong)
    if not meets(tune, scorer, threshold, args.target_wrong):
        print(f"WARNING: no threshold up to {threshold} meets the targets on every tune group", flush=True)
    print("one threshold for every question:\n" + trade_off(
        tune, scorer, sorted({0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, threshold})))
    print("vague questions (aspect confidence < cut) get their own threshold, each segment within the target:")
    for cut in (0.3, 0.4, 0.5, 0.6, 0.7):
        seg = choose_segmented(tune, scorer, args.target_wrong, cut)
        print(f"  cut {cut}: threshold {seg.threshold} / vague {seg.vague_threshold}: " + ", ".join(
            f"{g} right {100 * r['right']:.1f}% wrong {100 * r['wrong']:.{2 if g == 'clinc' else 1}f}% "
            f"(vague {sum(is_vague(p, cut) for p in ps)}/{len(ps)})"
            for g, ps in tune.items() for r in (evaluate(ps, seg, None),)))
    scorer = replace(scorer, threshold=threshold)
    if args.vague_below is not None:
        scorer = choose_segmented(tune, scorer, args.target_wrong, args.vague_below)
        threshold = scorer.threshold
    print(f"features {features}\ncoef {scorer.coef}\nintercept {scorer.intercept} threshold {threshold}"
          f" vague: below {scorer.vague_below} {scorer.vague_threshold}")
    report: dict[str, object] = {}
    for g, ps in tune.items():
        r = evaluate(ps, scorer, None)
        report[g] = {k: round(v, 4) for k, v in r.items()} | {"n": len(ps)}
        print(f"  tune {g}: n={len(ps)} right {r['right']:.3f} wrong {r['wrong']:.3f} top1 {r['top1']:.3f}")
    if args.dry_run:
        return 0
    inputs = hashlib.sha256()
    for path in (lib_path, SHARED / "medquad" / "train.jsonl", SHARED / "clinc150" / "train.jsonl",
                 DATA / "retrieval_demo_tune.jsonl", DATA / "retrieval_covid_tune.jsonl",
                 SHARED / "covid_faq" / "library.jsonl"):
        inputs.update(path.read_bytes())
    meta: dict[str, object] = {
        "fitted_by": "python -m knowledge.rerank_fit " + " ".join(argv_kept), "target_wrong": args.target_wrong,
        "inputs_sha256": inputs.hexdigest(), "tune": report,
        "fitted_on": ["../shared/eval/medquad/train.jsonl (topic-split: A aspects, B pair scorer + threshold)",
                      "../shared/eval/clinc150/train.jsonl (4000 sample)",
                      "benchmarks/data/retrieval_{demo,covid}_tune.jsonl",
                      "../shared/eval/covid_faq body matching, TUNE half (threshold only)"],
    }
    RERANK_PATH.write_text(json.dumps(Reranker(q_model, b_model, scorer, meta).to_json(), separators=(",", ":"))
                           + "\n", encoding="utf-8")
    print(f"wrote {RERANK_PATH} ({RERANK_PATH.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
