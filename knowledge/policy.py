"""The answer policy: hybrid fusion weights, and answer only when a calibrated P(right) is high enough.

A logistic model over the ranking's features (top score, margin to #2, dense and BM25
score of #1) estimates P(top-1 is a correct answer). Coefficients and the threshold
are fitted by ``python -m knowledge.tune`` on *tuning* data only (paraphrase tuning
sets + CLINC150 train); the reported figures come from held-out sets.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from knowledge.rerank import RERANK_PATH, Reranker, load_reranker
from knowledge.retrieval import DEFAULT_LEXICAL_WEIGHT, Fusion, Method, Ranking

POLICY_PATH = Path(__file__).resolve().parent / "policy.json"


@dataclass(frozen=True)
class Calibrator:
    coef: tuple[float, ...]
    intercept: float
    threshold: float

    def probability(self, features: list[float]) -> float:
        z = self.intercept + sum(c * f for c, f in zip(self.coef, features, strict=True))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


@dataclass(frozen=True)
class AnswerPolicy:
    lexical_weight: float
    calibrators: dict[str, Calibrator]
    fusion: Fusion | None = None  # None: the legacy mix (0.7 question + 0.3 body + lexical_weight × BM25)
    reranker: Reranker | None = None  # the second stage (knowledge/rerank.json); None: the calibrator decides

    def fusion_weights(self) -> Fusion:
        return self.fusion or Fusion(lexical=self.lexical_weight)

    def decide(self, ranking: Ranking) -> tuple[bool, float]:
        """(answer?, confidence) for a ranking; an empty ranking always escalates."""
        if not ranking.candidates:
            return False, 0.0
        cal = self.calibrators[ranking.method]
        p = cal.probability(ranking.features())
        return p >= cal.threshold, p

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"lexical_weight": self.lexical_weight}
        if self.fusion is not None:
            out["fusion"] = self.fusion.as_dict()
        out.update({
            "calibrators": {m: {"coef": list(c.coef), "intercept": c.intercept, "threshold": c.threshold}
                            for m, c in self.calibrators.items()},
        })
        return out

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AnswerPolicy:
        cals = data["calibrators"]
        assert isinstance(cals, dict)
        weight = data["lexical_weight"]
        assert isinstance(weight, int | float)
        fusion = data.get("fusion")
        assert fusion is None or isinstance(fusion, dict)
        return cls(
            lexical_weight=float(weight),
            fusion=Fusion(**{k: float(v) for k, v in fusion.items()}) if fusion else None,
            calibrators={m: Calibrator(tuple(float(x) for x in c["coef"]), float(c["intercept"]),
                                       float(c["threshold"])) for m, c in cals.items()},
        )


def _fallback() -> AnswerPolicy:
    # Conservative hand-set policy used only until knowledge/policy.json is tuned.
    cal = Calibrator((12.0, 6.0, 0.0, 0.0), -9.0, 0.5)
    methods: tuple[Method, ...] = ("hybrid", "bm25", "dense")
    return AnswerPolicy(DEFAULT_LEXICAL_WEIGHT, {m: cal for m in methods})


@lru_cache(maxsize=4)
def load_policy(path: Path = POLICY_PATH, rerank_path: Path = RERANK_PATH) -> AnswerPolicy:
    from dataclasses import replace

    policy = _fallback() if not path.exists() else AnswerPolicy.from_json(json.loads(path.read_text(encoding="utf-8")))
    return replace(policy, reranker=load_reranker(rerank_path))
