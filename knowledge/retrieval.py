"""Hybrid retrieval over an approved-content library: BM25 + dense, gate first, then rank.

Each item is indexed by its ``title``, its ``questions`` and its ``body`` (so an item
without questions is still found from its body). The caller passes the gate as a
boolean mask over items; gated items are never scored, so none can come out on top.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import sparse

from knowledge.embedding import Embedder, FaissVectorIndex, VectorIndex, Vectors

Method = Literal["hybrid", "bm25", "dense"]
METHODS: tuple[Method, ...] = ("bm25", "dense", "hybrid")

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "been", "being", "but", "by", "can", "could", "do",
    "does", "did", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it",
    "its", "me", "my", "of", "on", "or", "our", "should", "so", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "to", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "about",
    "any", "anything", "please", "tell", "know", "need", "want", "get", "much", "many", "am",
})


def tokenize(text: str) -> list[str]:
    out = []
    for w in _WORD.findall(text.lower()):
        if w in _STOP:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
        out.append(w)
    return out


@dataclass(frozen=True)
class IndexDoc:
    id: str
    version: int
    title: str
    questions: tuple[str, ...]
    body: str

    def passages(self) -> list[str]:
        seen: set[str] = set()
        out: list[str] = []
        for text in (self.title, *self.questions, self.body):
            key = text.strip().lower()
            if key and key not in seen:
                seen.add(key)
                out.append(text.strip())
        return out


class BM25:
    """Okapi BM25 over items (question fields counted twice), as a sparse doc × term matrix."""

    def __init__(self, docs: Sequence[IndexDoc], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[float] = []
        lengths = np.zeros(len(docs), dtype=np.float32)
        for d, doc in enumerate(docs):
            toks = tokenize(" ".join((doc.title, *doc.questions))) * 2 + tokenize(doc.body)
            lengths[d] = len(toks)
            counts: dict[int, int] = {}
            for t in toks:
                tid = vocab.setdefault(t, len(vocab))
                counts[tid] = counts.get(tid, 0) + 1
            for term, c in counts.items():
                rows.append(d)
                cols.append(term)
                tfs.append(float(c))
        n = len(docs)
        self.vocab = vocab
        tf = np.asarray(tfs, dtype=np.float32)
        col = np.asarray(cols, dtype=np.int64)
        df = np.bincount(col, minlength=len(vocab)).astype(np.float32)
        self.idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        self.max_idf = float(math.log(1.0 + (n + 0.5) / 0.5)) if n else 1.0
        avgdl = float(lengths.mean()) if n else 1.0
        dl = lengths[np.asarray(rows, dtype=np.int64)] if rows else np.zeros(0, dtype=np.float32)
        weights = self.idf[col] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / max(avgdl, 1e-6)))
        self.matrix = sparse.csc_matrix(
            (weights, (np.asarray(rows, dtype=np.int64), col)), shape=(n, len(vocab)), dtype=np.float32)

    def scores(self, query: str) -> npt.NDArray[np.float32]:
        """BM25 per item divided by the most a query of these terms could score: 0..~1."""
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms or self.matrix.shape[0] == 0:
            return np.zeros(self.matrix.shape[0], dtype=np.float32)
        known = [self.vocab[t] for t in terms if t in self.vocab]
        # unknown words still count in the ceiling: a query mostly about other things scores low
        ceiling = sum(float(self.idf[self.vocab[t]]) if t in self.vocab else self.max_idf for t in terms)
        ceiling *= self.k1 + 1
        if not known:
            return np.zeros(self.matrix.shape[0], dtype=np.float32)
        raw = np.asarray(self.matrix[:, known].sum(axis=1)).ravel()
        return (raw / ceiling).astype(np.float32)


def _top(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` highest scores, best first, ties by index (deterministic)."""
    if len(scores) > 4 * k:
        part = np.argpartition(-scores, k)[:k]
        return part[np.lexsort((part, -scores[part]))].astype(np.int64)
    return np.argsort(-scores, kind="stable")[:k].astype(np.int64)


@dataclass(frozen=True)
class Candidate:
    index: int       # position of the item in the retriever's docs
    score: float     # the method's ranking score
    dense: float
    bm25: float


@dataclass(frozen=True)
class Ranking:
    method: Method
    candidates: list[Candidate]  # best first

    def features(self) -> list[float]:
        """Inputs to the abstention calibrator: top score, margin to #2, and both signals of #1."""
        if not self.candidates:
            return [0.0, 0.0, 0.0, 0.0]
        top = self.candidates[0]
        second = self.candidates[1].score if len(self.candidates) > 1 else 0.0
        return [top.score, top.score - second, top.dense, top.bm25]


DEFAULT_LEXICAL_WEIGHT = 0.1
BODY_WEIGHT = 0.3  # hybrid dense score: 0.7 × best question/title match + 0.3 × body match


class HybridRetriever:
    """Three rankers over the same passages.

    ``bm25`` and ``dense`` are the single-method baselines on the raw query (dense = best
    passage cosine). ``hybrid`` is the product: the query with clinical short forms spelled
    out, a dense score mixing the best question match with the body match, plus BM25
    relative to the best lexical match among the allowed items.
    """

    def __init__(self, docs: Sequence[IndexDoc], embedder: Embedder, vectors: VectorIndex,
                 passage_doc: npt.NDArray[np.int64], passage_is_body: npt.NDArray[np.bool_] | None = None,
                 lexical_weight: float = DEFAULT_LEXICAL_WEIGHT) -> None:
        self.docs = list(docs)
        self.embedder = embedder
        self.vectors = vectors
        self.passage_doc = passage_doc
        if passage_is_body is None:
            passage_is_body = np.zeros(len(passage_doc), dtype=bool)
            ends = np.searchsorted(passage_doc, np.arange(len(self.docs)), side="right") - 1
            passage_is_body[ends[ends >= 0]] = True
        self.passage_is_body = passage_is_body
        self.bm25 = BM25(self.docs)
        self.lexical_weight = lexical_weight
        self.position = {d.id: i for i, d in enumerate(self.docs)}
        starts = np.searchsorted(passage_doc, np.arange(len(self.docs) + 1))
        self._passage_ranges = starts.astype(np.int64)

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(cls, docs: Sequence[IndexDoc], embedder: Embedder, *,
              cache: EmbeddingCache | None = None,
              index_factory: Callable[[int], VectorIndex] | None = None) -> HybridRetriever:
        texts: list[str] = []
        owner: list[int] = []
        for i, doc in enumerate(docs):
            for p in doc.passages():
                texts.append(p)
                owner.append(i)
        vecs = cache.embed(texts, embedder) if cache else embedder.embed(texts)
        index = (index_factory or FaissVectorIndex)(embedder.dim)
        index.add(vecs)
        return cls(docs, embedder, index, np.asarray(owner, dtype=np.int64))

    # -- ranking ----------------------------------------------------------------------------
    def _dense_top(self, qv: Vectors, allowed: npt.NDArray[np.bool_] | None, k_items: int
                   ) -> dict[int, float]:
        allowed_passages = None
        if allowed is not None:
            allowed_passages = np.flatnonzero(allowed[self.passage_doc]).astype(np.int64)
            if len(allowed_passages) == 0:
                return {}
        k = min(max(4 * k_items, 32), self.vectors.size)
        scores, ids = self.vectors.search(qv, k, allowed_passages)
        best: dict[int, float] = {}
        for s, pid in zip(scores[0], ids[0], strict=True):
            if pid < 0:
                continue
            d = int(self.passage_doc[pid])
            if allowed is not None and not allowed[d]:  # defence in depth: never rank a gated item
                continue
            if d not in best or s > best[d]:
                best[d] = float(s)
        return best

    def _dense_fields(self, qv: Vectors, doc: int) -> tuple[float, float]:
        """(best question/title cosine, body cosine) of one item, computed exactly."""
        lo, hi = int(self._passage_ranges[doc]), int(self._passage_ranges[doc + 1])
        sims = self.vectors.vectors_of(np.arange(lo, hi, dtype=np.int64)) @ qv[0]
        is_body = self.passage_is_body[lo:hi]
        q_best = float(sims[~is_body].max()) if (~is_body).any() else -1.0
        body = float(sims[is_body].max()) if is_body.any() else -1.0
        if q_best < -0.5:  # only a body passage (title equal to body): use it for both
            q_best = body
        if body < -0.5:
            body = q_best
        return q_best, body

    def rank(self, query: str, allowed: npt.NDArray[np.bool_] | None = None, *, method: Method = "hybrid",
             k: int = 5, vectors: Callable[[str], Vectors] | None = None) -> Ranking:
        """Top ``k`` allowed items for ``query``; ``vectors`` may supply (cached) query embeddings."""
        from knowledge.expand import expand_query

        n = len(self.docs)
        if n == 0 or (allowed is not None and not allowed.any()):
            return Ranking(method, [])
        embed = vectors or (lambda text: self.embedder.embed([text]))
        pool = max(k, 20)
        text = expand_query(query) if method == "hybrid" else query
        bm = self.bm25.scores(text)
        if allowed is not None:
            bm = np.where(allowed, bm, -1.0).astype(np.float32)
        if method == "bm25":
            order = _top(bm, k)
            cands = [Candidate(int(i), float(bm[i]), 0.0, float(bm[i])) for i in order if bm[i] >= 0]
            return Ranking(method, cands)
        qv = embed(text)
        dense = self._dense_top(qv, allowed, pool)
        if method == "dense":
            ranked = sorted(dense.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
            return Ranking(method, [Candidate(d, s, s, max(float(bm[d]), 0.0)) for d, s in ranked])
        union = set(dense)
        bm_top = _top(bm, pool)
        union.update(int(i) for i in bm_top if bm[i] > 0)
        best_bm = max(float(bm.max()), 1e-6)
        cands = []
        for d in union:
            q_best, body = self._dense_fields(qv, d)
            ds = (1 - BODY_WEIGHT) * q_best + BODY_WEIGHT * body
            bs = max(float(bm[d]), 0.0)
            cands.append(Candidate(d, ds + self.lexical_weight * bs / best_bm, ds, bs))
        cands.sort(key=lambda c: (-c.score, c.index))
        return Ranking(method, cands[:k])


class EmbeddingCache:
    """Passage vectors by text hash, per embedder, so a changed library only embeds what changed."""

    def __init__(self, directory: Path, embedder_name: str) -> None:
        self.path = directory / f"embeddings-{re.sub(r'[^A-Za-z0-9_.-]', '_', embedder_name)}.npz"
        self._keys: dict[str, int] = {}
        self._vecs: Vectors | None = None
        self.embedded_last = 0
        if self.path.exists():
            data = np.load(self.path)
            self._vecs = data["vectors"].astype(np.float32)
            self._keys = {str(k): i for i, k in enumerate(data["keys"].tolist())}

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def embed(self, texts: Sequence[str], embedder: Embedder) -> Vectors:
        keys = [self.key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._keys))
        by_key = {k: t for k, t in zip(keys, texts, strict=True)}
        self.embedded_last = len(missing)
        if missing:
            new = embedder.embed([by_key[k] for k in missing])
            start = 0 if self._vecs is None else len(self._vecs)
            self._vecs = new if self._vecs is None else np.vstack([self._vecs, new])
            for i, k in enumerate(missing):
                self._keys[k] = start + i
            self._save()
        assert self._vecs is not None or not texts
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        assert self._vecs is not None
        return self._vecs[[self._keys[k] for k in keys]]

    def _save(self) -> None:
        assert self._vecs is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz")
        os.close(fd)
        keys = np.array(sorted(self._keys, key=self._keys.__getitem__))
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=keys, vectors=self._vecs)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)


def save_retriever(retriever: HybridRetriever, directory: Path) -> None:
    """Persist the faiss file and its metadata (items and the passage → item map)."""
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(retriever.vectors, FaissVectorIndex):
        retriever.vectors.save(directory / "vectors.faiss.tmp")
        os.replace(directory / "vectors.faiss.tmp", directory / "vectors.faiss")
    meta = {
        "embedder": retriever.embedder.name,
        "docs": [[d.id, d.version, d.title, list(d.questions), d.body] for d in retriever.docs],
        "passage_doc": retriever.passage_doc.tolist(),
        "passage_is_body": retriever.passage_is_body.astype(int).tolist(),
    }
    tmp = directory / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, directory / "meta.json")


def load_retriever(directory: Path, embedder: Embedder) -> HybridRetriever | None:
    meta_path, faiss_path = directory / "meta.json", directory / "vectors.faiss"
    if not (meta_path.exists() and faiss_path.exists()):
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("embedder") != embedder.name:
        return None
    docs = [IndexDoc(i, v, t, tuple(q), b) for i, v, t, q, b in meta["docs"]]
    index = FaissVectorIndex.load(faiss_path)
    return HybridRetriever(docs, embedder, index, np.asarray(meta["passage_doc"], dtype=np.int64),
                           np.asarray(meta["passage_is_body"], dtype=bool))
