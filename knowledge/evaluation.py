"""Shared by the tuner and ``benchmarks/retrieval.py``: run labelled queries through each method.

A query set is JSONL: ``{"id", "text", "expected": [acceptable content ids] (empty = must
escalate), "market"?, "audience"?}``. Queries are embedded once per set and reused by
every method.

covid_faq body matching (:func:`covid_body`) is split once, by item, into two fixed halves
(:func:`covid_half`): ``tune`` may choose the second stage's threshold (``knowledge.rerank_fit``),
``report`` is never fitted or tuned on and is the figure the benchmarks cite.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np

from knowledge.embedding import Vectors
from knowledge.engine import LibraryKnowledgeBase
from knowledge.gate import Recipient
from knowledge.library import Library, LibraryItem, parse_library
from knowledge.retrieval import METHODS, EmbeddingCache, Method, Ranking

EVAL_TODAY = date(2026, 11, 23)  # fixed so the demo library's expired items stay expired in every run


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    text: str
    expected: frozenset[str]
    market: str = "US"
    audience: str = "hcp"


@dataclass(frozen=True)
class Outcome:
    query: LabelledQuery
    method: Method
    ranked_ids: list[str]
    features: list[float]

    @property
    def answerable(self) -> bool:
        return bool(self.query.expected)

    @property
    def top1_correct(self) -> bool:
        return bool(self.ranked_ids) and self.ranked_ids[0] in self.query.expected

    def reciprocal_rank(self) -> float:
        for i, cid in enumerate(self.ranked_ids, start=1):
            if cid in self.query.expected:
                return 1.0 / i
        return 0.0


def read_queries(path: Path, default_market: str = "US") -> list[LabelledQuery]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(LabelledQuery(d["id"], d["text"], frozenset(d.get("expected", [])),
                                     d.get("market", default_market), d.get("audience", "hcp")))
    return out


CovidHalf = Literal["tune", "report"]


def covid_half(item_ids: Iterable[str]) -> CovidHalf:
    """The fixed half of a covid_faq question: sha256 of its smallest acceptable item id, even → tune, odd → report.

    By item, not by query position: a question keeps its half however the file is ordered, and the
    items one question shares (duplicate FAQ entries) are always on the same side.
    """
    key = min(item_ids)
    return "tune" if int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2 == 0 else "report"


def covid_body(path: Path, half: CovidHalf | None = None) -> tuple[Library, list[LabelledQuery]]:
    """covid_faq without ``questions`` and ``title`` (body matching), queried with its own FAQ questions.

    The acceptable answers of a question are every item with exactly that question (title). The library
    always holds all the bodies; ``half`` keeps only the questions of that half (:func:`covid_half`).
    """
    library = parse_library(path)
    by_question: dict[str, set[str]] = {}
    for item in library.items:
        by_question.setdefault(item.title.strip(), set()).add(item.id)
    items: list[LibraryItem] = [replace(i, title="", questions=()) for i in library.items]
    queries = [LabelledQuery(f"covid-body-{n}", q, frozenset(ids)) for n, (q, ids) in enumerate(by_question.items())
               if half is None or covid_half(ids) == half]
    return Library(items, library.products), queries


def read_clinc(path: Path, limit: int | None = None, seed: int = 13) -> list[LabelledQuery]:
    """CLINC150 utterances as must-escalate queries (every one is off-topic for a medical bot)."""
    import random

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit is not None and limit < len(rows):
        oos = [r for r in rows if r["intent"] == "oos"]
        rest = [r for r in rows if r["intent"] != "oos"]
        random.Random(seed).shuffle(rest)
        rows = oos + rest[: max(0, limit - len(oos))]
    return [LabelledQuery(f"clinc-{i}", r["text"], frozenset()) for i, r in enumerate(rows)]


def run(lkb: LibraryKnowledgeBase, queries: Sequence[LabelledQuery], methods: Sequence[Method] = METHODS,
        today: date = EVAL_TODAY, k: int = 5, cache: EmbeddingCache | None = None) -> dict[Method, list[Outcome]]:
    """Rank every query with every method (no abstention applied; features kept for the policy)."""
    from knowledge.expand import expand_query

    retriever = lkb.kb.retriever
    texts = list(dict.fromkeys([q.text for q in queries] + [expand_query(q.text) for q in queries]))
    embedded = (cache.embed(texts, retriever.embedder) if cache else retriever.embedder.embed(texts)) \
        if texts else np.zeros((0, retriever.embedder.dim), dtype=np.float32)
    row = {t: i for i, t in enumerate(texts)}

    def vectors(text: str) -> Vectors:
        return embedded[row[text]:row[text] + 1]
    allowed_cache: dict[tuple[str, str], object] = {}
    results: dict[Method, list[Outcome]] = {m: [] for m in methods}

    for q in queries:
        key = (q.market, q.audience)
        if key not in allowed_cache:
            allowed = lkb.allowed(Recipient(q.market, q.audience, verified=True), today)
            allowed_cache[key] = np.fromiter(((d.id, d.version) in allowed for d in retriever.docs),
                                             dtype=bool, count=len(retriever.docs))
        mask = allowed_cache[key]
        assert isinstance(mask, np.ndarray)
        for m in methods:
            ranking: Ranking = retriever.rank(q.text, mask, method=m, k=k, vectors=vectors)
            ids = [retriever.docs[c.index].id for c in ranking.candidates]
            results[m].append(Outcome(q, m, ids, ranking.features()))
    return results
