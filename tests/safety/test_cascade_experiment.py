"""The MiniLM-veto experiment (benchmarks/safety_cascade.py, not shipped): its contract, on a small build.

A hashing embedder stands in for MiniLM so the build takes seconds; the real one is exercised by
``benchmarks/safety_cascade.py`` itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.safety.classifier import RuleModelScreen
from benchmarks import safety_cascade as sc

LIMIT = 300


@pytest.fixture(autouse=True)
def small_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test-sized build: 300 rows and a short L-BFGS budget (the hyper-parameters are in the hash), on one
    BLAS thread like the rest of the suite (tests/conftest.py): two spinning OpenBLAS threads on the 2-core box
    beside anything else running made the nested report 25 s instead of 2 s, for the same figures."""
    monkeypatch.setitem(sc.CASCADE_HYPER, "max_iter", 15)
    monkeypatch.setattr(sc, "BUILD_THREADS", 1)


class HashEmbedder:
    """Deterministic bag-of-words vectors (64 dims, unit length); counts the texts it embeds."""

    def __init__(self) -> None:
        self.calls = 0

    def _vec(self, text: str) -> Any:
        v = np.zeros(64)
        for word in text.split():
            v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 64] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed(self, texts: list[str]) -> Any:
        return np.stack([self._vec(t) for t in texts])

    def embed_one(self, text: str) -> Any:
        self.calls += 1
        return self._vec(text)[None, :]


def test_small_build_is_deterministic_and_cached_by_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = sc.load_or_train(tmp_path / "a", HashEmbedder(), limit=LIMIT, embedder_id="hash-64")
    again = sc.load_or_train(tmp_path / "b", HashEmbedder(), limit=LIMIT, embedder_id="hash-64")
    assert (first.gate, first.veto_below) == (again.gate, again.veto_below)
    assert np.array_equal(first.w1, again.w1)
    artifacts = list((tmp_path / "a").glob(f"{sc.ARTIFACT_PREFIX}*.pkl"))
    assert [p.name for p in artifacts] == [f"{sc.ARTIFACT_PREFIX}{first.fingerprint[:20]}.pkl"]
    assert first.meta["rows"] == LIMIT and first.meta["oof_recall"] >= sc.TARGET_RECALL

    def no_training(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a cached cascade was trained again")

    monkeypatch.setattr(sc, "train", no_training)
    cached = sc.load_or_train(tmp_path / "a", HashEmbedder(), limit=LIMIT, embedder_id="hash-64")
    assert cached.fingerprint == first.fingerprint
    # Another embedder (or data, or code) is another hash: never the old artifact.
    assert sc.cascade_fingerprint(LIMIT, embedder_id="hash-32") != first.fingerprint


def test_thresholds_keep_the_target_recall_and_never_lose_precision() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.4
    stage1 = np.clip(labels * 0.3 + rng.random(2000) * 0.7, 0, 1)
    stage2 = np.clip(labels * 0.4 + rng.random(2000) * 0.6, 0, 1)
    judged = np.ones(2000, dtype=bool)
    chosen = sc.choose_thresholds(stage1, stage2, labels, judged)
    flagged = (stage1 >= chosen["gate"]) & (stage2 >= chosen["veto"])
    assert (flagged & labels).sum() / labels.sum() >= sc.TARGET_RECALL
    alone = stage1 >= np.sort(stage1[labels])[int(np.floor(labels.sum() * (1 - sc.TARGET_RECALL)))]
    assert chosen["precision"] >= (alone & labels).sum() / alone.sum()


def _veto_everything(screen: RuleModelScreen, embedder: HashEmbedder) -> sc.CascadeScreen:
    cascade = sc.Cascade(gate=screen.model.threshold, veto_below=2.0, w1=np.zeros((64, 1)), b1=np.zeros(1),
                         w2=np.zeros(1), b2=0.0, fingerprint="test")
    return sc.CascadeScreen(screen, sc.Veto(cascade, embedder))


def test_rule_hits_are_never_vetoed_and_unflagged_messages_cost_nothing(screen: RuleModelScreen) -> None:
    embedder = HashEmbedder()
    cascade = _veto_everything(screen, embedder)
    for text in ("pregnant while on glucorel", "she took 3x the dose by mistake",
                 "my patient developed a rash after the second dose"):
        assert screen.screen(text).adverse_event
        assert cascade.screen(text).adverse_event, text
    assert embedder.calls == 0
    for text in ("hello", "what are the side effects of cardiovex?", "Dr Ada Jones"):
        assert not cascade.screen(text).adverse_event
    assert embedder.calls == 0


def test_a_model_only_hit_is_vetoed(screen: RuleModelScreen) -> None:
    text = "i felt like a zombie the whole first month"
    rules_only = sc.CascadeScreen(screen, _veto_everything(screen, HashEmbedder()).veto)._rules_only
    # A PsyTAR-style report with no rule word: the model flags it, the rules alone do not.
    assert screen.screen(text).adverse_event and not rules_only.screen(text).adverse_event
    embedder = HashEmbedder()
    cascade = _veto_everything(screen, embedder)
    assert not cascade.screen(text).adverse_event
    assert embedder.calls == 1 and cascade.vetoed == 1


def test_nested_report_judges_the_thresholds_on_held_out_folds() -> None:
    lines = sc.nested_report(LIMIT, HashEmbedder())
    assert [line.split(", ")[-1].split(":")[0] for line in lines] == ["stage 1 alone", "cascade (joint gate)"]
    for line in lines:
        recall = float(line.split("recall ")[1].split()[0])
        precision = float(line.split("precision ")[1])
        assert 0.0 < recall <= 1.0 and 0.0 < precision <= 1.0
