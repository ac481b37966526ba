"""The knowledge base: a persisted hybrid index over the current content, plus the policy.

Import-light: the model and faiss load lazily, once, under a lock. The index is keyed
by a hash of the indexed items and stored under ``index_dir/<hash>/`` (faiss file +
metadata); passage vectors are cached by text so a changed library only embeds what
changed. Gating is *not* baked into the index: it is a mask computed per query from
the items' current status and dates, so a withdrawal or expiry takes effect at once.
Libraries of ``IVF_MIN_PASSAGES`` passages or more get a faiss IVF index (approximate
candidate search, exact re-scoring of the candidates); smaller ones an exact flat index.
Both are persisted the same way.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

from knowledge.embedding import Embedder, SentenceTransformerEmbedder, VectorIndex, Vectors
from knowledge.gate import Gateable, Recipient, gate_reason
from knowledge.library import Library, LibraryItem
from knowledge.policy import AnswerPolicy, load_policy
from knowledge.rerank import Reranker, candidate_features
from knowledge.retrieval import (
    Candidate,
    EmbeddingCache,
    HybridRetriever,
    IndexDoc,
    Method,
    Ranking,
    load_retriever,
    save_retriever,
)

INDEX_FORMAT = "2"  # bump when the persisted layout changes


def docs_digest(docs: Sequence[IndexDoc], embedder_name: str) -> str:
    h = hashlib.sha256(f"{INDEX_FORMAT}\x00{embedder_name}".encode())
    for d in docs:
        h.update(repr((d.id, d.version, d.title, d.questions, d.body)).encode())
        h.update(b"\x00")
    return h.hexdigest()


def doc_from_item(item: LibraryItem) -> IndexDoc:
    return IndexDoc(item.id, item.version, item.title, tuple(item.questions), item.body)


@dataclass(frozen=True)
class Decision:
    answer: bool
    confidence: float
    ranking: Ranking
    candidate_ids: list[tuple[str, int, float]]  # (content_id, version, score) best first


class KnowledgeBase:
    def __init__(self, index_dir: Path, *, embedder: Embedder | None = None,
                 index_factory: Callable[[int], VectorIndex] | None = None,
                 policy: AnswerPolicy | None = None, persist: bool = True) -> None:
        self.index_dir = index_dir
        self.embedder: Embedder = embedder or SentenceTransformerEmbedder()
        self._index_factory = index_factory
        self.policy = policy or load_policy()
        self._persist = persist and index_factory is None
        self._lock = threading.RLock()
        self._retriever: HybridRetriever | None = None
        self._digest: str | None = None
        self.last_embedded = 0  # passages embedded by the last rebuild (0 = loaded from disk / cache)

    def sibling(self) -> KnowledgeBase:
        """A separate knowledge base with this one's model, policy and on-disk caches.

        For what-if rankings (the library-change replay in the api process): syncing it to a library
        that is not loaded leaves this one, which the bot answers from, untouched; what it embeds
        stays in the shared cache, so loading that library afterwards does not embed it again.
        """
        return KnowledgeBase(self.index_dir, embedder=self.embedder, index_factory=self._index_factory,
                             policy=self.policy, persist=self._persist)

    # -- lifecycle ---------------------------------------------------------------------------
    def ready(self) -> bool:
        return self._retriever is not None and bool(getattr(self.embedder, "loaded", True))

    def warm_up(self, session: object) -> None:
        """Build or load the index from the database's current versions and load the model."""
        from sqlalchemy.orm import Session

        from knowledge.service import current_docs

        assert isinstance(session, Session)
        docs = current_docs(session)
        session.rollback()  # end the read transaction: loading the model and embedding take seconds
        self.sync(docs)
        self.embedder.embed(["warm up"])

    def sync(self, docs: Sequence[IndexDoc]) -> HybridRetriever:
        """Make the index match ``docs``: no-op when unchanged, else load or incrementally rebuild."""
        digest = docs_digest(docs, self.embedder.name)
        with self._lock:
            if self._retriever is not None and digest == self._digest:
                return self._retriever
            directory = self.index_dir / digest[:24]
            retriever = load_retriever(directory, self.embedder) if self._persist else None
            self.last_embedded = 0
            if retriever is None:
                cache = EmbeddingCache(self.index_dir, self.embedder.name) if self._persist else None
                retriever = HybridRetriever.build(docs, self.embedder, cache=cache,
                                                  index_factory=self._index_factory)
                self.last_embedded = cache.embedded_last if cache else len(retriever.passage_doc)
                if self._persist:
                    save_retriever(retriever, directory)
            retriever.fusion = self.policy.fusion_weights()
            if self.policy.reranker is not None:  # ~1 ms per item, once per index: no cost per query
                retriever.aspects = {i: self.policy.reranker.body_aspects_of(d.body)
                                     for i, d in enumerate(retriever.docs)}
            self._retriever, self._digest = retriever, digest  # aspects travel with their retriever
            return retriever

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            raise RuntimeError("knowledge base not built: call sync() or warm_up() first")
        return self._retriever

    # -- answering ---------------------------------------------------------------------------
    def decide(self, query: str, allowed_ids: set[tuple[str, int]] | None, *,
               method: Method = "hybrid", k: int = 5, vectors: Callable[[str], Vectors] | None = None) -> Decision:
        """Rank only the allowed (content_id, version) pairs, then apply the abstention policy."""
        retriever = self.retriever
        mask = None
        if allowed_ids is not None:
            mask = np.fromiter(((d.id, d.version) in allowed_ids for d in retriever.docs), dtype=bool,
                               count=len(retriever.docs))
        reranker = self.policy.reranker
        if method == "hybrid" and reranker is not None:
            ranking, answer, confidence = self._second_stage(reranker, query, mask, k, vectors)
        else:
            ranking = retriever.rank(query, mask, method=method, k=k, vectors=vectors)
            answer, confidence = self.policy.decide(ranking)
        ids = [(retriever.docs[c.index].id, retriever.docs[c.index].version, c.score)
               for c in ranking.candidates]
        return Decision(answer, confidence, ranking, ids)


    def _second_stage(self, reranker: Reranker, query: str, mask: npt.NDArray[np.bool_] | None, k: int,
                      vectors: Callable[[str], Vectors] | None) -> tuple[Ranking, bool, float]:
        """Re-score the hybrid top ``POOL`` as (question, candidate) pairs; answer if P(best) clears the bar."""
        retriever = self.retriever
        index, x = candidate_features(reranker, retriever, retriever.aspects, query, mask, vectors)
        if len(index) == 0:
            return Ranking("hybrid", []), False, 0.0
        p = reranker.scorer.probability(x)
        order = np.lexsort((index, -p))[:k]
        cands = [Candidate(int(index[j]), float(p[j]), float(x[j, 0]), float(x[j, 5])) for j in order]
        best = float(p[order[0]])
        if retriever.docs[int(index[order[0]])].questions:
            # An item with curated questions: the calibrator fitted on curated-question libraries decides,
            # and only when the second stage agrees with the hybrid ranking on the item.
            fusion = retriever.fusion
            hybrid = Ranking("hybrid", [Candidate(int(index[j]), float(x[j, 0]), fusion.dense(x[j, 1], x[j, 2]),
                                                  float(x[j, 5])) for j in range(min(len(index), k))])
            answer, confidence = self.policy.decide(hybrid)
            return Ranking("hybrid", cands), bool(answer and order[0] == 0), confidence
        return Ranking("hybrid", cands), best >= reranker.scorer.threshold_for(x[order[0]]), best


class LibraryKnowledgeBase:
    """A knowledge base over a library file, gated from the file itself (the CLI, benchmarks)."""

    def __init__(self, library: Library, kb: KnowledgeBase) -> None:
        self.library = library
        self.kb = kb
        kb.sync([doc_from_item(i) for i in library.items])
        self._gateable: list[tuple[LibraryItem, Gateable]] = [(i, i) for i in library.items]

    def allowed(self, recipient: Recipient, today: date) -> set[tuple[str, int]]:
        return {(i.id, i.version) for i, g in self._gateable if gate_reason(g, recipient, today) is None}

    def decide(self, query: str, recipient: Recipient, today: date, *, method: Method = "hybrid") -> Decision:
        return self.kb.decide(query, self.allowed(recipient, today), method=method)


_INSTANCES: dict[Path, KnowledgeBase] = {}
_INSTANCES_LOCK = threading.Lock()


def get_knowledge_base(index_dir: Path) -> KnowledgeBase:
    """Process-wide singleton per index dir; nothing heavy happens until first use."""
    key = index_dir.resolve()
    with _INSTANCES_LOCK:
        if key not in _INSTANCES:
            _INSTANCES[key] = KnowledgeBase(key)
        return _INSTANCES[key]
