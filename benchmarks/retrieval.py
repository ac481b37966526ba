"""Retrieval quality on held-out queries: BM25 alone, dense alone and the product, side by side.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval.py [--clinc-limit N]

Held-out sets only: ``benchmarks/data/retrieval_{demo,covid}_test.jsonl`` and CLINC150 *val*
(every utterance off-topic). The policy (``knowledge/policy.json``) was fitted by
``python -m knowledge.tune`` on the ``*_tune.jsonl`` sets and CLINC150 *train*.

Columns: recall@1 / recall@5 / MRR over answerable queries (ranking only); then with the
abstention policy applied: answered-correct, answered-wrong and escalated as % of answerable
queries; on-topic-unanswerable (gated or not covered) escalated; CLINC150 val escalated.

Then an ablation (ranking only, same queries): each single method given the product's short-form
expansion, the product without BM25, and the product with the previous fixed mix, so the gain
can be traced to its parts.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.settings import Settings  # noqa: E402
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase  # noqa: E402
from knowledge.evaluation import LabelledQuery, Outcome, read_clinc, read_queries, run  # noqa: E402
from knowledge.expand import expand_query  # noqa: E402
from knowledge.library import parse_library  # noqa: E402
from knowledge.policy import load_policy  # noqa: E402
from knowledge.retrieval import METHODS, EmbeddingCache, Fusion  # noqa: E402

SHARED = REPO.parent / "shared"
DATA = REPO / "benchmarks" / "data"
LIBRARIES = {
    "demo": (REPO / "knowledge" / "content", DATA / "retrieval_demo_test.jsonl"),
    "covid": (SHARED / "eval" / "covid_faq" / "library.jsonl", DATA / "retrieval_covid_test.jsonl"),
}
LABELS = {"bm25": "BM25 alone", "dense": "dense alone", "hybrid": "product (hybrid)"}


def _pct(n: float, d: int) -> str:
    return f"{100 * n / d:5.1f}%" if d else "   n/a"


def summarise(outs: list[Outcome], oos: list[Outcome]) -> dict[str, str]:
    policy = load_policy()
    answerable = [o for o in outs if o.answerable]
    unanswerable = [o for o in outs if not o.answerable]

    def answered(o: Outcome) -> bool:
        return policy.calibrators[o.method].probability(o.features) >= policy.calibrators[o.method].threshold \
            if o.ranked_ids else False

    a = len(answerable)
    return {
        "n": str(a),
        "R@1": f"{sum(o.top1_correct for o in answerable) / a:.3f}",
        "R@5": f"{sum(o.reciprocal_rank() > 0 for o in answerable) / a:.3f}",
        "MRR": f"{sum(o.reciprocal_rank() for o in answerable) / a:.3f}",
        "answered right": _pct(sum(answered(o) and o.top1_correct for o in answerable), a),
        "answered wrong": _pct(sum(answered(o) and not o.top1_correct for o in answerable), a),
        "escalated": _pct(sum(not answered(o) for o in answerable), a),
        "unanswerable escalated": f"{sum(not answered(o) for o in unanswerable)}/{len(unanswerable)}",
        "CLINC val escalated": _pct(sum(not answered(o) for o in oos), len(oos)),
    }


def _ranking_row(label: str, outs: list[Outcome]) -> str:
    a = [o for o in outs if o.answerable]
    return (f"| {label} | {len(a)} | {sum(o.top1_correct for o in a) / len(a):.3f} "
            f"| {sum(o.reciprocal_rank() > 0 for o in a) / len(a):.3f} "
            f"| {sum(o.reciprocal_rank() for o in a) / len(a):.3f} |")


def ablation(lkb: LibraryKnowledgeBase, queries: list[LabelledQuery], cache: EmbeddingCache,
             res: dict[str, list[Outcome]]) -> None:
    retriever = lkb.kb.retriever
    product = retriever.fusion
    expanded = [replace(q, text=expand_query(q.text)) for q in queries]
    single = run(lkb, expanded, methods=("bm25", "dense"), cache=cache)
    print("\nablation (ranking only):\n")
    print("| variant | n | R@1 | R@5 | MRR |\n|---|---|---|---|---|")
    print(_ranking_row("BM25 alone, query as typed (baseline above)", res["bm25"]))
    print(_ranking_row("BM25 alone + short-form expansion", single["bm25"]))
    print(_ranking_row("dense alone, query as typed (baseline above)", res["dense"]))
    print(_ranking_row("dense alone + short-form expansion", single["dense"]))
    variants = {
        "product without BM25 (dense fields only)": Fusion(product.question, product.body, product.best, 0.0, 0.0),
        "product with the previous fixed mix (0.7 question + 0.3 body + 0.05 BM25)": Fusion(0.7, 0.3, 0.0, 0.05, 0.0),
    }
    try:
        for label, fusion in variants.items():
            retriever.fusion = fusion
            print(_ranking_row(label, run(lkb, queries, methods=("hybrid",), cache=cache)["hybrid"]))
    finally:
        retriever.fusion = product
    print(_ranking_row("product (fitted fusion, above)", res["hybrid"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinc-limit", type=int, default=None, help="sample CLINC val (default: all)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the ablation tables")
    args = parser.parse_args(argv)
    settings = Settings()
    started = time.perf_counter()
    query_cache = EmbeddingCache(settings.resolved_index_dir / "queries", "all-MiniLM-L6-v2")
    clinc = read_clinc(SHARED / "eval" / "clinc150" / "val.jsonl", limit=args.clinc_limit)
    policy = load_policy()
    print(f"policy: fusion {policy.fusion_weights().as_dict()}; thresholds "
          + ", ".join(f"{m}={c.threshold}" for m, c in policy.calibrators.items()))
    cols = ["n", "R@1", "R@5", "MRR", "answered right", "answered wrong", "escalated",
            "unanswerable escalated", "CLINC val escalated"]
    for name, (lib, qpath) in LIBRARIES.items():
        lkb = LibraryKnowledgeBase(parse_library(lib), KnowledgeBase(settings.resolved_index_dir))
        queries = read_queries(qpath)
        res = run(lkb, queries, cache=query_cache)
        oos = run(lkb, clinc, cache=query_cache)
        print(f"\n### {name} library ({len(lkb.library.items)} items) — {qpath.name}: {len(queries)} queries "
              f"({sum(1 for q in queries if q.expected)} answerable), CLINC150 val: {len(clinc)}\n")
        print("| method | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for m in METHODS:
            row = summarise(res[m], oos[m])
            print(f"| {LABELS[m]} | " + " | ".join(row[c] for c in cols) + " |")
        if not args.no_ablation:
            ablation(lkb, queries, query_cache, res)
    print(f"\n(ran in {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
