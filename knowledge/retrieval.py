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
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import sparse

from knowledge.embedding import (
    Embedder,
    FaissIVFVectorIndex,
    FaissVectorIndex,
    VectorIndex,
    Vectors,
    load_vector_index,
    vector_index_for,
)

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
        # postings: term t's items are indices[indptr[t]:indptr[t + 1]], their weights the same slice of data
        self._indptr = self.matrix.indptr
        self._items = self.matrix.indices
        self._weights = self.matrix.data

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
        # add each term's postings in query order, in float32: the same sums, bit for bit, as the
        # sparse column sum this replaced, without building a sub-matrix per query
        raw = np.zeros(self.matrix.shape[0], dtype=np.float32)
        for t in known:
            lo, hi = self._indptr[t], self._indptr[t + 1]
            raw[self._items[lo:hi]] += self._weights[lo:hi]
        return (raw / ceiling).astype(np.float32)


def _top(scores: npt.NDArray[np.float32], k: int, *, positive: bool = False) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` highest scores, best first, ties by index (deterministic, also at the cut).

    ``positive``: only scores above 0 compete (the hybrid pool's lexical candidates), so a
    large library only partitions the items that share a word with the query.
    """
    cand = np.flatnonzero(scores > 0) if positive else np.arange(len(scores))
    vals = scores[cand]
    if len(cand) > k:
        kth = np.partition(vals, len(vals) - k)[len(vals) - k]  # the k-th highest value
        above = np.flatnonzero(vals > kth)
        tied = np.flatnonzero(vals == kth)[: k - len(above)]  # lowest indices first
        keep = np.concatenate([above, tied])
        cand, vals = cand[keep], vals[keep]
    return cand[np.lexsort((cand, -vals))].astype(np.int64)


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


@dataclass(frozen=True)
class Fusion:
    """Weights of the product's (hybrid) score; fitted by ``python -m knowledge.tune``.

    The query is embedded once, with short forms spelled out. Per item: the best title/question
    cosine, the body cosine and the best cosine over all of its passages (max-sim) are mixed
    into one dense score (weights normalised to sum 1, so it stays on the cosine scale); then
    BM25 of the expanded query and of the query as typed are each added relative to the best
    BM25 among the allowed items (0..1).
    """

    question: float = 0.7
    body: float = 0.3
    best: float = 0.0
    lexical: float = DEFAULT_LEXICAL_WEIGHT
    lexical_raw: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"question": self.question, "body": self.body, "best": self.best,
                "lexical": self.lexical, "lexical_raw": self.lexical_raw}

    def dense(self, q_best: float, body: float) -> float:
        total = self.question + self.body + self.best
        if total <= 0:
            return max(q_best, body)
        return (self.question * q_best + self.body * body + self.best * max(q_best, body)) / total


@dataclass(frozen=True)
class Signals:
    """Every signal the hybrid score is made of, for the candidate pool of one query (tuning)."""

    index: npt.NDArray[np.int64]
    question: npt.NDArray[np.float32]
    body: npt.NDArray[np.float32]
    lexical: npt.NDArray[np.float32]       # BM25 of the expanded query / best allowed
    lexical_raw: npt.NDArray[np.float32]   # BM25 of the query as typed / best allowed
    bm25: npt.NDArray[np.float32]          # BM25 of the expanded query (ceiling-normalised)

    def matrix(self) -> npt.NDArray[np.float64]:
        """Columns in the order of :class:`Fusion` (question, body, best, lexical, lexical_raw)."""
        return np.stack([self.question, self.body, np.maximum(self.question, self.body),
                         self.lexical, self.lexical_raw], axis=1).astype(np.float64)


class HybridRetriever:
    """Three rankers over the same passages.

    ``bm25`` and ``dense`` are the single-method baselines on the query as typed (dense = best
    passage cosine). ``hybrid`` is the product: the query with clinical short forms spelled
    out, dense field scores of each candidate computed exactly, plus BM25 (expanded and as
    typed) relative to the best lexical match among the allowed items, weighted by ``fusion``.
    """

    def __init__(self, docs: Sequence[IndexDoc], embedder: Embedder, vectors: VectorIndex,
                 passage_doc: npt.NDArray[np.int64], passage_is_body: npt.NDArray[np.bool_] | None = None,
                 lexical_weight: float = DEFAULT_LEXICAL_WEIGHT, fusion: Fusion | None = None) -> None:
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
        self.fusion = fusion or Fusion(lexical=lexical_weight)
        self.position = {d.id: i for i, d in enumerate(self.docs)}
        starts = np.searchsorted(passage_doc, np.arange(len(self.docs) + 1))
        self._passage_ranges = starts.astype(np.int64)
        self._allowed_passages: OrderedDict[bytes, npt.NDArray[np.int64]] = OrderedDict()
        self._allowed_lock = threading.Lock()

    @property
    def lexical_weight(self) -> float:
        return self.fusion.lexical

    @lexical_weight.setter
    def lexical_weight(self, value: float) -> None:
        self.fusion = Fusion(self.fusion.question, self.fusion.body, self.fusion.best, value,
                             self.fusion.lexical_raw)

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
        index = index_factory(embedder.dim) if index_factory else vector_index_for(embedder.dim, len(texts))
        index.add(vecs)
        return cls(docs, embedder, index, np.asarray(owner, dtype=np.int64))

    # -- ranking ----------------------------------------------------------------------------
    def _passages_of(self, allowed: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """Ids of the passages of allowed items: one read-only array per distinct gate mask (a few kept)."""
        key = hashlib.blake2b(np.packbits(allowed).tobytes(), digest_size=16).digest() + len(allowed).to_bytes(8)
        with self._allowed_lock:
            hit = self._allowed_passages.get(key)
            if hit is not None:
                self._allowed_passages.move_to_end(key)
                return hit
        ids = np.flatnonzero(allowed[self.passage_doc]).astype(np.int64)
        ids.flags.writeable = False
        with self._allowed_lock:
            self._allowed_passages[key] = ids
            while len(self._allowed_passages) > 16:
                self._allowed_passages.popitem(last=False)
        return ids

    def _dense_top(self, qv: Vectors, allowed: npt.NDArray[np.bool_] | None, k_items: int
                   ) -> dict[int, float]:
        allowed_passages = None
        if allowed is not None:
            allowed_passages = self._passages_of(allowed)
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

    def _dense_fields(self, qv: Vectors, docs: npt.NDArray[np.int64]
                      ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(best question/title cosine, body cosine) of each item in ``docs``, computed exactly."""
        lo, hi = self._passage_ranges[docs], self._passage_ranges[docs + 1]
        counts = hi - lo
        pids = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        sims = self.vectors.vectors_of(pids.astype(np.int64)) @ qv[0]
        owner = np.repeat(np.arange(len(docs)), counts)
        is_body = self.passage_is_body[pids]
        q_best = np.full(len(docs), -2.0, dtype=np.float32)
        body = np.full(len(docs), -2.0, dtype=np.float32)
        np.maximum.at(q_best, owner[~is_body], sims[~is_body])
        np.maximum.at(body, owner[is_body], sims[is_body])
        # only a body passage (title equal to body), or no body: use the one for both
        q_best = np.where(q_best < -1.5, body, q_best)
        body = np.where(body < -1.5, q_best, body)
        return q_best, body

    def _bm25_allowed(self, text: str, allowed: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.float32]:
        """BM25 of ``text`` per item, -1 for items the gate does not allow."""
        bm = self.bm25.scores(text)
        if allowed is not None:
            bm[~allowed] = -1.0  # a fresh array per call
        return bm

    def signals(self, query: str, allowed: npt.NDArray[np.bool_] | None = None, *, k: int = 5,
                vectors: Callable[[str], Vectors] | None = None) -> Signals:
        """The hybrid candidate pool of ``query`` and every signal of each candidate."""
        from knowledge.expand import expand_query

        empty_f = np.zeros(0, dtype=np.float32)
        empty = Signals(np.zeros(0, dtype=np.int64), empty_f, empty_f, empty_f, empty_f, empty_f)
        if not self.docs or (allowed is not None and not allowed.any()):
            return empty
        embed = vectors or (lambda text: self.embedder.embed([text]))
        pool = max(k, 20)
        text = expand_query(query)
        bm = self._bm25_allowed(text, allowed)
        bm_raw = self._bm25_allowed(query, allowed) if text != query else bm
        qv = embed(text)
        union = set(self._dense_top(qv, allowed, pool))
        for scores in (bm, bm_raw) if bm_raw is not bm else (bm,):
            union.update(_top(scores, pool, positive=True).tolist())
        if not union:
            return empty
        idx = np.array(sorted(union), dtype=np.int64)
        q_best, body = self._dense_fields(qv, idx)
        bs, bs_raw = np.maximum(bm[idx], 0.0), np.maximum(bm_raw[idx], 0.0)
        rel = bs / max(float(bm.max()), 1e-6)
        rel_raw = bs_raw / max(float(bm_raw.max()), 1e-6)
        return Signals(idx, q_best, body, rel.astype(np.float32), rel_raw.astype(np.float32),
                       bs.astype(np.float32))

    def hybrid_pool(self, query: str, allowed: npt.NDArray[np.bool_] | None = None, *, k: int = 5,
                    vectors: Callable[[str], Vectors] | None = None
                    ) -> tuple[Signals, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The hybrid top ``k``: (their signals, dense score, hybrid score), best first, ties by item position."""
        sig = self.signals(query, allowed, k=k, vectors=vectors)
        f = self.fusion
        total = f.question + f.body + f.best
        if total > 0:
            ds = (f.question * sig.question + f.body * sig.body
                  + f.best * np.maximum(sig.question, sig.body)) / total
        else:
            ds = np.maximum(sig.question, sig.body)
        score = ds + f.lexical * sig.lexical + f.lexical_raw * sig.lexical_raw
        order = np.lexsort((sig.index, -score))[:k]
        top = Signals(sig.index[order], sig.question[order], sig.body[order], sig.lexical[order],
                      sig.lexical_raw[order], sig.bm25[order])
        return top, ds[order].astype(np.float32), score[order].astype(np.float32)

    def rank(self, query: str, allowed: npt.NDArray[np.bool_] | None = None, *, method: Method = "hybrid",
             k: int = 5, vectors: Callable[[str], Vectors] | None = None) -> Ranking:
        """Top ``k`` allowed items for ``query``; ``vectors`` may supply (cached) query embeddings."""
        n = len(self.docs)
        if n == 0 or (allowed is not None and not allowed.any()):
            return Ranking(method, [])
        embed = vectors or (lambda text: self.embedder.embed([text]))
        if method == "hybrid":
            sig, ds, score = self.hybrid_pool(query, allowed, k=k, vectors=vectors)
            return Ranking(method, [Candidate(int(sig.index[j]), float(score[j]), float(ds[j]), float(sig.bm25[j]))
                                    for j in range(len(sig.index))])
        bm = self._bm25_allowed(query, allowed)
        if method == "bm25":
            order = _top(bm, k)
            return Ranking(method, [Candidate(int(i), float(bm[i]), 0.0, float(bm[i])) for i in order if bm[i] >= 0])
        dense = self._dense_top(embed(query), allowed, max(k, 20))
        ranked = sorted(dense.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return Ranking(method, [Candidate(d, s, s, max(float(bm[d]), 0.0)) for d, s in ranked])


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
    if isinstance(retriever.vectors, FaissVectorIndex | FaissIVFVectorIndex):
        retriever.vectors.save(directory / "vectors.faiss.tmp")
        os.replace(directory / "vectors.faiss.tmp", directory / "vectors.faiss")
    meta = {
        "embedder": retriever.embedder.name,
        "index": "ivf" if isinstance(retriever.vectors, FaissIVFVectorIndex) else "flat",
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
    index = load_vector_index(faiss_path)
    return HybridRetriever(docs, embedder, index, np.asarray(meta["passage_doc"], dtype=np.int64),
                           np.asarray(meta["passage_is_body"], dtype=bool))
