"""The second stage: aspect models, the pair scorer inside ``KnowledgeBase.decide``, and the shipped file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knowledge.embedding import HashingEmbedder, NumpyVectorIndex
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase
from knowledge.gate import Recipient
from knowledge.library import parse_library
from knowledge.policy import AnswerPolicy, load_policy
from knowledge.rerank import FEATURES, RERANK_PATH, AspectModel, PairScorer, Reranker, load_reranker
from knowledge.rerank_fit import Pool, choose_segmented, choose_threshold, evaluate, fit_aspects
from tests.knowledge.conftest import TODAY, make_item

WriteLibrary = Callable[[list[dict[str, Any]]], Path]
US_HCP = Recipient("US", "hcp", verified=True)

# Own wording: a handful of questions / bodies per aspect, enough for a toy aspect model.
QUESTIONS = {
    "storage": ["where do I keep the pens", "fridge or room temperature for these tablets",
                "how long can it stay out of the refrigerator", "keep the vials cold or not"],
    "dose": ["how many milligrams per day", "what is the usual starting amount",
             "max daily milligrams allowed", "how much should an adult take"],
}
BODIES = {
    "storage": ["Keep in a refrigerator between 2 and 8 degrees; may stay at room temperature for 14 days.",
                "Store the tablets below 25 degrees in the original pack, away from moisture."],
    "dose": ["Adults start with 10 mg once daily; the maximum is 40 mg per day.",
             "The usual amount is one 5 mg tablet each morning, up to 20 mg daily."],
}


def _toy_reranker(threshold: float = 0.5) -> Reranker:
    qs = [(t, a) for a, ts in QUESTIONS.items() for t in ts]
    bs = [(t, a) for a, ts in BODIES.items() for t in ts]
    q_model = fit_aspects([t for t, _ in qs], [a for _, a in qs], limit=50, min_df=1, prune=0.0)
    b_model = fit_aspects([t for t, _ in bs], [a for _, a in bs], limit=50, min_df=1, prune=0.0)
    coef = {"hybrid": 8.0, "aspect_agree": 4.0, "gap": -6.0}
    scorer = PairScorer(FEATURES, tuple(coef.get(f, 0.0) for f in FEATURES), -7.0, threshold)
    return Reranker(q_model, b_model, scorer, {})


def _items() -> list[dict[str, Any]]:
    # Two look-alikes: the same product, no curated questions, one about storage and one about dose.
    return [
        make_item(id="R-STORE", title="Velorin", product="velorin", approval_code="A-1", questions=[],
                  body="Keep Velorin pens in a refrigerator between 2 and 8 degrees; once opened a pen may stay "
                       "at room temperature for 14 days."),
        make_item(id="R-DOSE", title="Velorin", product="velorin", approval_code="A-2", questions=[],
                  body="Adults start Velorin at 10 mg once daily; the maximum is 40 mg per day."),
        make_item(id="R-SRD", title="Velorin renal", product="velorin", approval_code="A-3", kind="srd",
                  questions=[], body="Velorin 10 mg daily in renal impairment: exposure rose by a fifth."),
    ]


@pytest.fixture()
def rerank_kb(tmp_path: Path, test_policy: AnswerPolicy) -> KnowledgeBase:
    policy = replace(test_policy, reranker=_toy_reranker())
    return KnowledgeBase(tmp_path / "index", embedder=HashingEmbedder(), index_factory=NumpyVectorIndex,
                         policy=policy)


def test_aspect_model_learns_and_round_trips_through_json() -> None:
    model = _toy_reranker().question_aspects
    again = AspectModel.from_json(model.to_json())
    for text in ("how many milligrams each day", "can I keep it out of the fridge"):
        np.testing.assert_allclose(again.proba(text), model.proba(text), atol=1e-3)
    assert model.classes[int(np.argmax(model.proba("how many milligrams a day for adults")))] == "dose"
    assert model.classes[int(np.argmax(model.proba("keep the pens in the fridge?")))] == "storage"
    assert model.proba("").sum() == pytest.approx(1.0, abs=1e-5)


def test_second_stage_ranks_the_body_that_answers_this_aspect_first(
        write_library: WriteLibrary, rerank_kb: KnowledgeBase) -> None:
    lkb = LibraryKnowledgeBase(parse_library(write_library(_items())), rerank_kb)
    fridge = lkb.decide("velorin: fridge or room temperature?", US_HCP, TODAY)
    amount = lkb.decide("velorin: how many milligrams per day for an adult?", US_HCP, TODAY)
    assert fridge.candidate_ids[0][0] == "R-STORE"
    assert amount.candidate_ids[0][0] == "R-DOSE"
    assert all(0.0 <= s <= 1.0 for _, _, s in fridge.candidate_ids)       # scores are probabilities
    assert fridge.confidence == pytest.approx(fridge.candidate_ids[0][2])


def test_second_stage_abstains_below_its_threshold(write_library: WriteLibrary, tmp_path: Path,
                                                   test_policy: AnswerPolicy) -> None:
    strict = KnowledgeBase(tmp_path / "i2", embedder=HashingEmbedder(), index_factory=NumpyVectorIndex,
                           policy=replace(test_policy, reranker=_toy_reranker(threshold=0.9999)))
    lkb = LibraryKnowledgeBase(parse_library(write_library(_items())), strict)
    d = lkb.decide("velorin: fridge or room temperature?", US_HCP, TODAY)
    assert not d.answer and d.candidate_ids  # ranked, but not sure enough to answer


@pytest.mark.parametrize("text", ["", "   ", "🙂🙂💊", "dose " * 2000, "Dosis von Velorin? 剂量是多少?"])
def test_bad_input_gets_a_decision_and_never_a_gated_candidate(
        write_library: WriteLibrary, rerank_kb: KnowledgeBase, text: str) -> None:
    lkb = LibraryKnowledgeBase(parse_library(write_library(_items())), rerank_kb)
    d = lkb.decide(text, Recipient("US", "hcp", verified=False), TODAY)
    assert isinstance(d.answer, bool) and 0.0 <= d.confidence <= 1.0
    assert "R-SRD" not in [c for c, _, _ in d.candidate_ids]


@pytest.mark.skipif(not RERANK_PATH.exists(), reason="no shipped second stage")
def test_shipped_second_stage_loads_into_the_policy_and_reads_question_aspects() -> None:
    stage = load_reranker()
    assert stage is not None and load_policy().reranker is not None
    assert set(stage.scorer.features) <= set(FEATURES) and 0.0 < stage.scorer.threshold < 1.0
    qa = stage.question_aspects
    assert qa.classes[int(np.argmax(qa.proba("is this condition passed down from parents to children")))] \
        == "inheritance"
    assert qa.classes[int(np.argmax(qa.proba("what treatments exist for this disorder?")))] == "treatment"


def test_vague_questions_get_their_own_threshold_in_decide_and_in_json(
        write_library: WriteLibrary, tmp_path: Path, test_policy: AnswerPolicy) -> None:
    base = _toy_reranker(threshold=0.05)   # the toy scorer's P(best) here is ~0.1
    # every question counts as vague (aspect confidence is at most 1): the strict bar decides
    strict_vague = replace(base, scorer=replace(base.scorer, vague_below=1.01, vague_threshold=0.9999))
    again = Reranker.from_json(strict_vague.to_json())
    assert (again.scorer.vague_below, again.scorer.vague_threshold) == (1.01, 0.9999)
    assert Reranker.from_json(base.to_json()).scorer.vague_threshold is None   # files without it: one bar
    decisions = []
    for n, stage in enumerate((base, again)):
        kb = KnowledgeBase(tmp_path / f"i{n}", embedder=HashingEmbedder(), index_factory=NumpyVectorIndex,
                           policy=replace(test_policy, reranker=stage))
        lkb = LibraryKnowledgeBase(parse_library(write_library(_items())), kb)
        decisions.append(lkb.decide("velorin: fridge or room temperature?", US_HCP, TODAY))
    assert decisions[0].answer and decisions[0].candidate_ids[0][0] == "R-STORE"
    assert not decisions[1].answer and decisions[1].candidate_ids[0][0] == "R-STORE"  # same ranking, held back
    row = np.zeros(len(FEATURES))
    row[FEATURES.index("aspect_conf")] = 0.3
    scorer = replace(base.scorer, vague_below=0.5, vague_threshold=0.9)
    assert scorer.threshold_for(row) == 0.9
    row[FEATURES.index("aspect_conf")] = 0.7
    assert scorer.threshold_for(row) == 0.05


def test_segmented_threshold_choice_keeps_each_group_within_the_target() -> None:
    conf, hybrid = FEATURES.index("aspect_conf"), FEATURES.index("hybrid")
    scorer = PairScorer(("hybrid",), (1.0,), 0.0, 0.5)   # P = sigmoid(hybrid)

    def pool(group: str, p_best: float, right: bool, aspect_conf: float) -> Pool:
        x = np.zeros((2, len(FEATURES)))
        x[:, conf] = aspect_conf
        x[0, hybrid], x[1, hybrid] = np.log(p_best / (1 - p_best)), -5.0
        return Pool(group, True, x, np.array([right, False]))

    # Clear questions are right when sure-ish; vague ones are wrong even at P 0.92.
    tune = {"a": [pool("a", 0.7, True, 0.9) for _ in range(20)] + [pool("a", 0.92, False, 0.2) for _ in range(5)]
            + [pool("a", 0.97, True, 0.2) for _ in range(5)]}
    one = choose_threshold(tune, scorer, 0.03)
    assert evaluate(tune["a"], scorer, one)["wrong"] <= 0.03 and evaluate(tune["a"], scorer, one)["right"] < 0.2
    seg = choose_segmented(tune, scorer, 0.03, cut=0.5)
    assert seg.vague_below == 0.5 and seg.vague_threshold is not None
    assert seg.threshold <= 0.7 and 0.92 < seg.vague_threshold <= 0.97
    r = evaluate(tune["a"], seg, None)
    assert r["wrong"] == 0.0 and r["right"] == pytest.approx(25 / 30)
