"""Retrieval quality on text nobody here wrote: one table, set × method.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval.py [--clinc-limit N] [--no-regression]

Headline sets (public dev splits; nothing in the product was fitted on them):

* **MedQuAD dev** — 2,918 NIH-style questions against the whole 16,381-item MedQuAD library
  (``../shared/eval/medquad``: title = topic only, no curated questions; the answer is a body).
  Same-topic items of other question types are the look-alikes.
* **covid_faq body matching** — the 213 FAQ items with ``questions`` and ``title`` removed, each
  FAQ question asked as a query (acceptable: every item with that exact question). Its questions are
  split by item into two fixed halves (``knowledge.evaluation.covid_half``, sha256 of the item id):
  ``--sets covid-body-report`` (97 questions) is the figure to cite — nothing is fitted or tuned on
  it; the other half (``covid-body-tune``, 112) may set the second stage's threshold
  (``knowledge.rerank_fit``), so ``covid-body`` (all 209) is partly tuned on and only a comparison.
* **CLINC150 val** — 3,100 off-topic utterances asked of each of the two libraries above; all
  must escalate ("answered" is the failure).

Methods: BM25 alone and raw dense alone (best passage cosine, MiniLM), each with its own fitted
calibrator (``knowledge/policy.json``); raw dense again with a plain cosine threshold set *on
this set* so it answers wrongly at the same rate as the product (an optimistic baseline: its
threshold sees the answers); and the product (``KnowledgeBase.decide``: hybrid ranking, then
the second stage when ``knowledge/rerank.json`` is present, then abstention).

Columns: answered-correct, answered-wrong, escalated as % of the set's queries; top-1 = ranking
only (is the first candidate acceptable, whatever the decision); look-alike = answered with an
item of the *same topic* as an expected item but not acceptable (MedQuAD only: same ``focus``,
read here for scoring, never by the product).

Then the regression sets written for this project (``benchmarks/data/retrieval_*_test.jsonl``)
with the same columns: regression tests, not headline figures.

Embeddings are cached by text hash under ``var/index`` (library passages and queries), so a
rerun only embeds what changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.settings import Settings  # noqa: E402
from knowledge.embedding import Vectors  # noqa: E402
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase  # noqa: E402
from knowledge.evaluation import (  # noqa: E402
    EVAL_TODAY,
    CovidHalf,
    LabelledQuery,
    covid_body,
    read_clinc,
    read_queries,
)
from knowledge.expand import expand_query  # noqa: E402
from knowledge.gate import Recipient  # noqa: E402
from knowledge.library import Library, parse_library  # noqa: E402
from knowledge.policy import load_policy  # noqa: E402
from knowledge.rerank import RERANK_PATH  # noqa: E402
from knowledge.retrieval import EmbeddingCache  # noqa: E402

SHARED = REPO.parent / "shared" / "eval"
DATA = REPO / "benchmarks" / "data"
MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Result:
    answered: bool
    top1: str | None
    score: float   # the method's own ranking score of #1 (dense: cosine)


def medquad(dev_topics_only: bool = False) -> tuple[Library, list[LabelledQuery], dict[str, str]]:
    """The library (all 16,381 items, or with ``dev_topics_only`` the 3,253 items of dev's topics) and dev."""
    lib_path = SHARED / "medquad" / "library.jsonl"
    focus = {}
    for line in lib_path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        focus[d["id"]] = d.get("focus") or d["title"]
    library, queries = parse_library(lib_path), read_queries(SHARED / "medquad" / "dev.jsonl")
    if dev_topics_only:
        topics = {focus[e] for q in queries for e in q.expected}
        library = Library([i for i in library.items if focus[i.id] in topics], library.products)
    return library, queries, focus


def _vectors(cache: EmbeddingCache, lkb: LibraryKnowledgeBase, texts: Sequence[str]) -> Callable[[str], Vectors]:
    all_texts = list(dict.fromkeys([*texts, *(expand_query(t) for t in texts)]))
    embedded = cache.embed(all_texts, lkb.kb.embedder)
    row = {t: i for i, t in enumerate(all_texts)}

    def vectors(text: str) -> Vectors:
        if text in row:
            return embedded[row[text]:row[text] + 1]
        return lkb.kb.embedder.embed([text])
    return vectors


def run_set(lkb: LibraryKnowledgeBase, queries: Sequence[LabelledQuery], cache: EmbeddingCache
            ) -> dict[str, list[Result]]:
    """Each method's decision and top-1 for every query (verified HCP, the query's market)."""
    vectors = _vectors(cache, lkb, [q.text for q in queries])
    policy = load_policy()
    retriever = lkb.kb.retriever
    out: dict[str, list[Result]] = {"bm25": [], "dense": [], "product": [], "before": []}
    staged = lkb.kb.policy if lkb.kb.policy.reranker is not None else None
    before = replace(lkb.kb.policy, reranker=None)
    masks: dict[tuple[str, str], set[tuple[str, int]]] = {}
    for q in queries:
        key = (q.market, q.audience)
        if key not in masks:
            masks[key] = lkb.allowed(Recipient(q.market, q.audience, verified=True), EVAL_TODAY)
        allowed = masks[key]
        mask = np.fromiter(((d.id, d.version) in allowed for d in retriever.docs), dtype=bool,
                           count=len(retriever.docs))
        for m in ("bm25", "dense"):
            ranking = retriever.rank(q.text, mask, method=m, k=5, vectors=vectors)
            ok, _ = policy.decide(ranking)
            top = retriever.docs[ranking.candidates[0].index].id if ranking.candidates else None
            out[m].append(Result(ok, top, ranking.candidates[0].score if ranking.candidates else -1.0))
        d = lkb.kb.decide(q.text, allowed, vectors=vectors)
        top = d.candidate_ids[0][0] if d.candidate_ids else None
        out["product"].append(Result(d.answer, top, d.confidence))
        if staged is not None:  # the product as it was before the second stage, for comparison
            lkb.kb.policy = before
            try:
                d = lkb.kb.decide(q.text, allowed, vectors=vectors)
            finally:
                lkb.kb.policy = staged
            top = d.candidate_ids[0][0] if d.candidate_ids else None
            out["before"].append(Result(d.answer, top, d.confidence))
    return out


def _row(name: str, method: str, queries: Sequence[LabelledQuery], res: Sequence[Result],
         focus: dict[str, str] | None, answered: Callable[[Result], bool] | None = None) -> tuple[str, float]:
    n = len(queries)
    ans = [answered(r) if answered else r.answered for r in res]
    right = sum(a and r.top1 in q.expected for a, r, q in zip(ans, res, queries, strict=True))
    wrong = sum(a and r.top1 not in q.expected for a, r, q in zip(ans, res, queries, strict=True))
    top1 = sum(r.top1 in q.expected for r, q in zip(res, queries, strict=True))
    look = "—"
    if focus is not None:
        foci = [{focus[e] for e in q.expected} for q in queries]
        la = sum(a and r.top1 is not None and r.top1 not in q.expected and focus.get(r.top1) in f
                 for a, r, q, f in zip(ans, res, queries, foci, strict=True))
        look = f"{100 * la / n:.1f}%"
    answerable = any(q.expected for q in queries)
    cells = [f"{100 * right / n:.1f}%", f"{100 * wrong / n:.1f}%", f"{100 * (n - right - wrong) / n:.1f}%",
             f"{top1 / n:.3f}", look] if answerable else \
        ["—", f"**{100 * wrong / n:.2f}%** answered", f"{100 * (n - wrong) / n:.2f}%", "—", "—"]
    return f"| {name} | {method} | {n} | " + " | ".join(cells) + " |", wrong / n


def dense_at(res: Sequence[Result], queries: Sequence[LabelledQuery], wrong_rate: float) -> Callable[[Result], bool]:
    """Cosine threshold on this set so raw dense answers wrongly at most ``wrong_rate`` of the queries."""
    pairs = sorted(((r.score, r.top1 in q.expected) for r, q in zip(res, queries, strict=True)), reverse=True)
    budget = int(wrong_rate * len(queries) + 1e-9)
    wrong, cut = 0, float("inf")
    for i, (s, ok) in enumerate(pairs):
        wrong += not ok
        if wrong > budget:
            break
        if i + 1 == len(pairs) or pairs[i + 1][0] < s:
            cut = s
    return lambda r: r.score >= cut


HEADER = ("| set | method | n | answered correct | answered wrong | escalated | top-1 | look-alike answered |\n"
          "|---|---|---|---|---|---|---|---|")


def table(sets: list[tuple[str, LibraryKnowledgeBase, list[LabelledQuery], dict[str, str] | None]],
          clinc: list[LabelledQuery], cache: EmbeddingCache) -> None:
    print(HEADER)
    for name, lkb, queries, focus in sets:
        t0 = time.perf_counter()
        res = run_set(lkb, queries, cache)
        elapsed = time.perf_counter() - t0
        rows = {}
        for m, label in (("bm25", "BM25 (own calibrator)"), ("dense", "raw dense (own calibrator)")):
            rows[m], _ = _row(name, label, queries, res[m], focus)
        prod_row, prod_wrong = _row(name, "**product**", queries, res["product"], focus)
        at, _ = _row(name, f"raw dense @ product's wrong rate ({100 * prod_wrong:.1f}%)", queries, res["dense"],
                     focus, dense_at(res["dense"], queries, prod_wrong))
        lines = [rows["bm25"], rows["dense"], at]
        if res["before"]:
            lines.append(_row(name, "product before the second stage", queries, res["before"], focus)[0])
        print("\n".join([*lines, prod_row]))
        oos = run_set(lkb, clinc, cache)
        for m, label in (("bm25", "BM25"), ("dense", "raw dense"), ("before", "product before the second stage"),
                         ("product", "**product**")):
            if oos[m]:
                print(_row(f"CLINC150 val → {name} library", label, clinc, oos[m], None)[0])
        print(f"<!-- {name}: {elapsed / max(len(queries), 1) * 1000:.1f} ms per query, all methods -->",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinc-limit", type=int, default=None, help="sample CLINC val (default: all)")
    parser.add_argument("--no-regression", action="store_true", help="skip the own regression sets")
    parser.add_argument("--sets", nargs="*", default=["medquad", "covid-body-report"],
                        choices=["medquad", "covid-body-report", "covid-body-tune", "covid-body"])
    parser.add_argument("--medquad-dev-topics-only", action="store_true",
                        help="library = the 3,253 items of dev's topics only (fewer distractors; development aid)")
    parser.add_argument("--rerank", type=Path, default=RERANK_PATH,
                        help="the second stage to load (default: the shipped knowledge/rerank.json)")
    args = parser.parse_args(argv)
    policy = load_policy(rerank_path=args.rerank)
    settings = Settings()
    started = time.perf_counter()
    cache = EmbeddingCache(settings.resolved_index_dir / "queries", MODEL)
    clinc = read_clinc(SHARED / "clinc150" / "val.jsonl", limit=args.clinc_limit)
    kb_dir = settings.resolved_index_dir
    sets: list[tuple[str, LibraryKnowledgeBase, list[LabelledQuery], dict[str, str] | None]] = []
    if "medquad" in args.sets:
        lib, queries, focus = medquad(args.medquad_dev_topics_only)
        label = "MedQuAD dev (dev-topic items only)" if args.medquad_dev_topics_only else "MedQuAD dev"
        sets.append((label, LibraryKnowledgeBase(lib, KnowledgeBase(kb_dir, policy=policy)), queries, focus))
    covid_path = SHARED / "covid_faq" / "library.jsonl"
    halves: tuple[tuple[str, CovidHalf | None, str], ...] = (
        ("covid-body-report", "report", "covid_faq body matching, REPORT half"),
        ("covid-body-tune", "tune", "covid_faq body matching, TUNE half (threshold tuned on)"),
        ("covid-body", None, "covid_faq body matching (all; TUNE half tuned on)"))
    for name, half, label in halves:
        if name in args.sets:
            lib, queries = covid_body(covid_path, half)
            sets.append((label, LibraryKnowledgeBase(lib, KnowledgeBase(kb_dir, policy=policy)), queries, None))
    print("## Headline: public dev splits (not fitted on)\n")
    if args.rerank != RERANK_PATH:
        print(f"(second stage: {args.rerank})\n")
    table(sets, clinc, cache)
    if not args.no_regression:
        print("\n## Regression: query sets written for this project (not headline figures)\n")
        reg = [(f"regression: {name}", LibraryKnowledgeBase(parse_library(lib), KnowledgeBase(kb_dir, policy=policy)),
                read_queries(q), None) for name, lib, q in (
            ("demo", REPO / "knowledge" / "content", DATA / "retrieval_demo_test.jsonl"),
            ("covid (with questions)", SHARED / "covid_faq" / "library.jsonl", DATA / "retrieval_covid_test.jsonl"))]
        print(HEADER)
        for name, lkb, queries, _ in reg:
            res = run_set(lkb, queries, cache)
            for m, label in (("bm25", "BM25"), ("dense", "raw dense"), ("before", "product before the second stage"),
                             ("product", "**product**")):
                if res[m]:
                    print(_row(name, label, queries, res[m], None)[0])
    print(f"\n(ran in {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
