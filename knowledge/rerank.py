"""The second stage: "is this candidate the answer to *this* question?", per (question, candidate) pair.

The hybrid ranker (:mod:`knowledge.retrieval`) finds items about the right *topic*; on a
library of bodies without curated questions the top candidates are often the same topic's
other answers (causes vs. treatment vs. symptoms: look-alikes). This stage re-scores the top
``POOL`` hybrid candidates with a logistic pair scorer over cheap features and answers only
when the calibrated P(correct) of the best one clears a threshold chosen for a stated target
wrong-answer rate. Features per candidate (:data:`FEATURES`):

* the hybrid score and its parts: best title/question cosine, body cosine, relative BM25 of
  the expanded query and of the query as typed, ceiling-normalised BM25;
* the candidate's gap to the best hybrid score and its hybrid rank;
* whether the candidate has curated questions (and that flag times the hybrid score, the
  question cosine and the gap): a question-to-question match is calibrated differently from a
  question-to-body one;
* **aspect agreement**: Σ_a P(question asks about a) · P(body answers a), two small linear
  word-n-gram classifiers (:class:`AspectModel`) over MedQuAD's question types (symptoms,
  treatment, causes, inheritance, …), trained on MedQuAD *train* with its ``qtype`` labels
  (training only; nothing reads ``qtype`` at answer time), plus the question's own aspect
  confidence (a generic question makes the aspect signal weak).

Everything is small enough to ship as JSON (``knowledge/rerank.json``: the two aspect models,
pruned to their non-zero weights, the pair scorer's coefficients and the threshold). It is
fitted by ``python -m knowledge.rerank_fit`` from MedQuAD *train*, CLINC150 *train* and the
project's own tuning sets; the headline figures come from dev splits it never saw.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Callable

    from knowledge.embedding import Vectors
    from knowledge.retrieval import HybridRetriever

RERANK_PATH = Path(__file__).resolve().parent / "rerank.json"
POOL = 10          # hybrid candidates the second stage re-scores
BODY_WORDS = 120   # words of a body read by the aspect model (its opening says what it answers)
QUERY_CHARS = 2000  # characters of a question read by the aspect model

_ASPECT_WORD = re.compile(r"[a-z]+")


def aspect_tokens(text: str, limit: int) -> list[str]:
    """Lower-case words (stop words kept: "how", "what", "who" carry the aspect) and word bigrams."""
    words = _ASPECT_WORD.findall(text.lower())[:limit]
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


@dataclass(frozen=True)
class AspectModel:
    """A multinomial logistic model over binary word / bigram features, L2-normalised per text."""

    classes: tuple[str, ...]
    vocab: dict[str, int]
    weights: npt.NDArray[np.float32]   # len(vocab) × len(classes)
    bias: npt.NDArray[np.float32]      # len(classes)
    limit: int

    def proba(self, text: str) -> npt.NDArray[np.float32]:
        ids = sorted({self.vocab[t] for t in aspect_tokens(text, self.limit) if t in self.vocab})
        n_tokens = len(set(aspect_tokens(text, self.limit)))
        z = self.bias.astype(np.float64).copy()
        if ids and n_tokens:
            z += self.weights[ids].sum(axis=0) / math.sqrt(n_tokens)
        z -= z.max()
        e = np.exp(z)
        out: npt.NDArray[np.float32] = (e / e.sum()).astype(np.float32)
        return out

    def to_json(self) -> dict[str, object]:
        return {"classes": list(self.classes), "limit": self.limit, "bias": [round(float(b), 4) for b in self.bias],
                "weights": {t: [round(float(w), 4) for w in self.weights[i]] for t, i in self.vocab.items()}}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AspectModel:
        weights = data["weights"]
        classes = data["classes"]
        bias = data["bias"]
        limit = data["limit"]
        assert isinstance(weights, dict) and isinstance(classes, list) and isinstance(bias, list)
        assert isinstance(limit, int)
        vocab = {t: i for i, t in enumerate(weights)}
        w = np.array([weights[t] for t in vocab], dtype=np.float32).reshape(len(vocab), len(classes))
        return cls(tuple(str(c) for c in classes), vocab, w, np.array(bias, dtype=np.float32), limit)


FEATURES = ("hybrid", "question", "body", "lexical", "lexical_raw", "bm25", "gap", "rank",
            "aspect_agree", "aspect_conf", "curated", "curated_hybrid", "curated_question", "curated_gap")


@dataclass(frozen=True)
class PairScorer:
    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    # A question the aspect model does not recognise (its aspect confidence below ``vague_below``) is
    # out of the scorer's training domain: its P(best) is over-confident, so it has its own bar.
    vague_below: float = 0.0
    vague_threshold: float | None = None

    def threshold_for(self, row: npt.NDArray[np.float64]) -> float:
        """The bar for the best candidate's feature row (columns = :data:`FEATURES`)."""
        if self.vague_threshold is not None and float(row[FEATURES.index("aspect_conf")]) < self.vague_below:
            return self.vague_threshold
        return self.threshold

    def probability(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """P(candidate is the answer) for each row of ``x`` (columns = :data:`FEATURES`)."""
        cols = [FEATURES.index(f) for f in self.features]
        z = self.intercept + x[:, cols] @ np.asarray(self.coef, dtype=np.float64)
        out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))
        return out


@dataclass(frozen=True)
class Reranker:
    question_aspects: AspectModel
    body_aspects: AspectModel
    scorer: PairScorer
    meta: dict[str, object]

    def features(self, query: str, hybrid: Sequence[float], question: Sequence[float], body: Sequence[float],
                 lexical: Sequence[float], lexical_raw: Sequence[float], bm25: Sequence[float],
                 bodies: Sequence[npt.NDArray[np.float32]], curated: Sequence[bool] | None = None
                 ) -> npt.NDArray[np.float64]:
        """Feature rows for a pool sorted by hybrid score, best first; ``bodies`` = body aspect vectors."""
        n = len(hybrid)
        h = np.asarray(hybrid, dtype=np.float64)
        qa = self.question_aspects.proba(query[:QUERY_CHARS]).astype(np.float64)
        agree = np.array([float(qa @ b) for b in bodies], dtype=np.float64) if n else np.zeros(0)
        x = np.zeros((n, len(FEATURES)), dtype=np.float64)
        if n == 0:
            return x
        x[:, 0] = h
        x[:, 1] = question
        x[:, 2] = body
        x[:, 3] = lexical
        x[:, 4] = lexical_raw
        x[:, 5] = bm25
        x[:, 6] = h[0] - h
        x[:, 7] = np.log1p(np.arange(n))
        x[:, 8] = agree
        x[:, 9] = float(qa.max())
        c = np.asarray(curated if curated is not None else [False] * n, dtype=np.float64)
        x[:, 10] = c
        x[:, 11] = c * x[:, 0]
        x[:, 12] = c * x[:, 1]
        x[:, 13] = c * x[:, 6]
        return x

    def body_aspects_of(self, body: str) -> npt.NDArray[np.float32]:
        return self.body_aspects.proba(body)

    def to_json(self) -> dict[str, object]:
        s = self.scorer
        scorer: dict[str, object] = {"features": list(s.features), "coef": list(s.coef),
                                     "intercept": s.intercept, "threshold": s.threshold}
        if s.vague_threshold is not None:
            scorer |= {"vague_below": s.vague_below, "vague_threshold": s.vague_threshold}
        return {"meta": self.meta, "scorer": scorer,
                "question_aspects": self.question_aspects.to_json(), "body_aspects": self.body_aspects.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Reranker:
        s = data["scorer"]
        qa, ba, meta = data["question_aspects"], data["body_aspects"], data.get("meta", {})
        assert isinstance(s, dict) and isinstance(qa, dict) and isinstance(ba, dict) and isinstance(meta, dict)
        vague = s.get("vague_threshold")
        scorer = PairScorer(tuple(s["features"]), tuple(float(c) for c in s["coef"]), float(s["intercept"]),
                            float(s["threshold"]), float(s.get("vague_below", 0.0)),
                            None if vague is None else float(vague))
        return cls(AspectModel.from_json(qa), AspectModel.from_json(ba), scorer, meta)


def candidate_features(reranker: Reranker, retriever: HybridRetriever, memo: dict[int, npt.NDArray[np.float32]],
                       query: str, mask: npt.NDArray[np.bool_] | None,
                       vectors: Callable[[str], Vectors] | None = None
                       ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(item positions, feature rows) of the hybrid top ``POOL`` of ``query``, best hybrid score first.

    ``memo`` keeps each item's body aspect vector (computed on first use, per retriever).
    """
    sig, _, hybrid = retriever.hybrid_pool(query, mask, k=POOL, vectors=vectors)
    bodies = []
    for i in sig.index.tolist():
        vec = memo.get(i)
        if vec is None:
            vec = memo[i] = reranker.body_aspects_of(retriever.docs[i].body)
        bodies.append(vec)
    curated = [bool(retriever.docs[i].questions) for i in sig.index.tolist()]
    x = reranker.features(query, hybrid.tolist(), sig.question.tolist(), sig.body.tolist(),
                          sig.lexical.tolist(), sig.lexical_raw.tolist(), sig.bm25.tolist(), bodies, curated)
    return sig.index, x


@lru_cache(maxsize=4)
def load_reranker(path: Path = RERANK_PATH) -> Reranker | None:
    """The shipped second stage, or ``None`` when there is none (the hybrid policy decides alone)."""
    if not path.exists():
        return None
    return Reranker.from_json(json.loads(path.read_text(encoding="utf-8")))
