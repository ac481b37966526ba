from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knowledge.embedding import (
    FaissIVFVectorIndex,
    FaissVectorIndex,
    HashingEmbedder,
    NumpyVectorIndex,
    VectorIndex,
)
from knowledge.engine import KnowledgeBase, LibraryKnowledgeBase
from knowledge.expand import expand_query
from knowledge.gate import Recipient
from knowledge.library import parse_library
from knowledge.policy import AnswerPolicy
from knowledge.retrieval import BM25, HybridRetriever, IndexDoc, _top, tokenize
from tests.knowledge.conftest import TODAY, small_items

WriteLibrary = Callable[[list[dict[str, Any]]], Path]
US_HCP = Recipient("US", "hcp", verified=True)


def _lkb(write_library: WriteLibrary, kb: KnowledgeBase, items: list[dict[str, Any]] | None = None
         ) -> LibraryKnowledgeBase:
    return LibraryKnowledgeBase(parse_library(write_library(items or small_items())), kb)


@pytest.mark.parametrize("factory", [FaissVectorIndex, FaissIVFVectorIndex, NumpyVectorIndex])
def test_vector_index_contract_top_k_and_allowed_restriction(factory: Callable[[int], VectorIndex]) -> None:
    vecs = HashingEmbedder().embed(["storage of tablets", "dose of tablets", "injection site", "travel"])
    index = factory(vecs.shape[1])
    index.add(vecs)
    scores, ids = index.search(vecs[1:2], 2)
    assert ids[0][0] == 1 and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    _, ids = index.search(vecs[1:2], 4, np.array([0, 2], dtype=np.int64))
    assert set(ids[0].tolist()) == {0, 2}
    np.testing.assert_allclose(index.vectors_of(np.array([3])), vecs[3:4], atol=1e-6)


def test_hashing_embedder_is_deterministic_and_unit_length() -> None:
    a = HashingEmbedder().embed(["Cardiovex dose", "Cardiovex dose", "something else"])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a[0], a[1])


def test_bm25_prefers_the_item_sharing_rare_terms() -> None:
    docs = [IndexDoc("A", 1, "storage", ("how to store tablets",), "below 30 degrees"),
            IndexDoc("B", 1, "dose", ("what dose",), "10 mg once daily")]
    scores = BM25(docs).scores("what is the dose?")
    assert scores[1] > scores[0] == 0.0
    assert tokenize("The Tablets") == ["tablet"]


def test_bm25_postings_sum_equals_the_sparse_column_sum_bit_for_bit() -> None:
    items = small_items()
    docs = [IndexDoc(i["id"], 1, i["title"], tuple(i["questions"]), i["body"]) for i in items] * 30
    bm = BM25(docs)
    for query in ("cardiovex dose dose", "store the respizan pen in the fridge", "zzz unknown", "the of", ""):
        got = bm.scores(query)
        terms = list(dict.fromkeys(tokenize(query)))
        known = [bm.vocab[t] for t in terms if t in bm.vocab]
        if not known:
            assert got.dtype == np.float32 and not got.any()
            continue
        ceiling = sum(float(bm.idf[bm.vocab[t]]) if t in bm.vocab else bm.max_idf for t in terms) * (bm.k1 + 1)
        ref = (np.asarray(bm.matrix[:, known].sum(axis=1)).ravel() / ceiling).astype(np.float32)
        assert got.dtype == np.float32 and np.array_equal(got, ref), query


def test_top_k_breaks_ties_by_index_also_at_the_cut() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        n, k = int(rng.integers(0, 400)), int(rng.integers(1, 25))
        scores = (rng.integers(-2, 4, n) / 3).astype(np.float32)  # many ties, some <= 0
        ranked = sorted(range(n), key=lambda i: (-scores[i], i))
        assert _top(scores, k).tolist() == ranked[:k]
        assert _top(scores, k, positive=True).tolist() == [i for i in ranked if scores[i] > 0][:k]


def test_short_forms_are_spelled_out_for_retrieval() -> None:
    assert expand_query("cardiovex CI?") == "cardiovex contraindications?"
    assert expand_query("LFTs on velostatin") == "liver function tests on velostatin"


def test_item_without_questions_is_found_from_its_body(write_library: WriteLibrary, fake_kb: KnowledgeBase
                                                       ) -> None:
    d = _lkb(write_library, fake_kb).decide("carry pens in hand luggage inside a cool bag when flying",
                                           US_HCP, TODAY)
    assert d.candidate_ids[0][0] == "T-004"


def test_exact_question_is_answered_with_that_item(write_library: WriteLibrary, fake_kb: KnowledgeBase) -> None:
    d = _lkb(write_library, fake_kb).decide("How is Respizan injected?", US_HCP, TODAY)
    assert d.answer and d.candidate_ids[0][0] == "T-003"


def test_expired_item_is_never_answered_even_as_the_best_match(write_library: WriteLibrary,
                                                               fake_kb: KnowledgeBase) -> None:
    items = small_items()
    items[2]["expires_at"] = "2026-06-30"  # T-003, the exact match below
    d = _lkb(write_library, fake_kb, items).decide("How is Respizan injected?", US_HCP, TODAY)
    assert "T-003" not in [c for c, _, _ in d.candidate_ids]
    assert not (d.answer and d.candidate_ids[0][0] == "T-003")


@pytest.mark.parametrize(("over", "recipient"), [
    ({"status": "withdrawn"}, US_HCP),
    ({"status": "draft"}, US_HCP),
    ({"approved_at": "2026-12-24"}, US_HCP),
    ({"markets": ["GB"]}, US_HCP),
    ({"audience": ["patient"]}, US_HCP),
    ({"kind": "srd"}, Recipient("US", "hcp", verified=False)),
])
def test_no_gated_item_ever_appears_among_candidates(write_library: WriteLibrary, fake_kb: KnowledgeBase,
                                                     over: dict[str, Any], recipient: Recipient) -> None:
    items = small_items()
    items[1].update(over)  # T-002, the dose item
    d = _lkb(write_library, fake_kb, items).decide("What is the recommended dose of Cardiovex?", recipient, TODAY)
    assert "T-002" not in [c for c, _, _ in d.candidate_ids]


def test_everything_gated_means_escalate_with_no_candidates(write_library: WriteLibrary,
                                                            fake_kb: KnowledgeBase) -> None:
    d = _lkb(write_library, fake_kb).decide("dose", Recipient("JP", "hcp", True), TODAY)
    assert not d.answer and d.candidate_ids == []


def test_off_topic_query_escalates(write_library: WriteLibrary, fake_kb: KnowledgeBase) -> None:
    d = _lkb(write_library, fake_kb).decide("what's the weather in paris tomorrow", US_HCP, TODAY)
    assert not d.answer


def test_same_input_gives_the_same_ranking_and_scores(write_library: WriteLibrary, tmp_path: Path,
                                                      test_policy: AnswerPolicy) -> None:
    path = write_library(small_items())
    runs = []
    for n in range(2):
        kb = KnowledgeBase(tmp_path / f"i{n}", embedder=HashingEmbedder(), index_factory=NumpyVectorIndex,
                           policy=test_policy)
        d = LibraryKnowledgeBase(parse_library(path), kb).decide("cardiovex storage temperature", US_HCP, TODAY)
        runs.append((d.answer, d.confidence, d.candidate_ids))
    assert runs[0] == runs[1]


def test_index_is_persisted_by_library_hash_and_rebuilt_incrementally(tmp_path: Path,
                                                                      test_policy: AnswerPolicy) -> None:
    docs = [IndexDoc(i["id"], 1, i["title"], tuple(i["questions"]), i["body"]) for i in small_items()]
    kb = KnowledgeBase(tmp_path, embedder=HashingEmbedder(), policy=test_policy)
    kb.sync(docs)
    total = len(kb.retriever.passage_doc)
    assert kb.last_embedded == total
    assert len(list(tmp_path.glob("*/vectors.faiss"))) == 1 and len(list(tmp_path.glob("*/meta.json"))) == 1

    fresh = KnowledgeBase(tmp_path, embedder=HashingEmbedder(), policy=test_policy)
    fresh.sync(docs)
    assert fresh.last_embedded == 0  # loaded from disk

    changed = [*docs[:3], IndexDoc(docs[3].id, 2, docs[3].title, (), "A new approved body text.")]
    fresh.sync(changed)
    assert fresh.last_embedded == 1  # only the new body was embedded
    assert len(list(tmp_path.glob("*/vectors.faiss"))) == 2


def test_hybrid_ranking_scores_candidates_best_first() -> None:
    docs = [IndexDoc(i["id"], 1, i["title"], tuple(i["questions"]), i["body"]) for i in small_items()]
    r = HybridRetriever.build(docs, HashingEmbedder(), index_factory=NumpyVectorIndex)
    ranking = r.rank("Cardiovex dose", k=4)
    scores = [c.score for c in ranking.candidates]
    assert scores == sorted(scores, reverse=True)
    assert r.docs[ranking.candidates[0].index].id == "T-002"


@pytest.mark.slow
def test_real_model_embeds_unit_vectors_and_ranks_a_paraphrase_first(write_library: WriteLibrary,
                                                                      tmp_path: Path) -> None:
    from knowledge.embedding import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder()
    v = emb.embed(["How should the tablets be stored?", "keep pills in fridge?", "football scores"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    kb = KnowledgeBase(tmp_path / "idx", embedder=emb)
    d = LibraryKnowledgeBase(parse_library(write_library(small_items())), kb).decide(
        "where do I inject respizan", US_HCP, TODAY)
    assert d.candidate_ids[0][0] == "T-003"
    off = LibraryKnowledgeBase(parse_library(write_library(small_items())), kb).decide(
        "transfer 200 dollars to my savings account", US_HCP, TODAY)
    assert not off.answer


def test_large_libraries_get_a_persisted_ivf_index_that_ranks_like_flat(tmp_path: Path, test_policy: AnswerPolicy,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from knowledge import embedding

    docs = [IndexDoc(i["id"], 1, i["title"], tuple(i["questions"]), i["body"]) for i in small_items()]
    flat = KnowledgeBase(tmp_path / "flat", embedder=HashingEmbedder(), policy=test_policy)
    flat.sync(docs)
    assert isinstance(flat.retriever.vectors, FaissVectorIndex)

    monkeypatch.setattr(embedding, "IVF_MIN_PASSAGES", 5)
    kb = KnowledgeBase(tmp_path / "ivf", embedder=HashingEmbedder(), policy=test_policy)
    kb.sync(docs)
    assert isinstance(kb.retriever.vectors, FaissIVFVectorIndex)
    reloaded = KnowledgeBase(tmp_path / "ivf", embedder=HashingEmbedder(), policy=test_policy)
    reloaded.sync(docs)
    assert reloaded.last_embedded == 0 and isinstance(reloaded.retriever.vectors, FaissIVFVectorIndex)
    n = reloaded.retriever.vectors.size
    np.testing.assert_allclose(reloaded.retriever.vectors.vectors_of(np.arange(n)),
                               flat.retriever.vectors.vectors_of(np.arange(n)), atol=1e-6)
    allowed = {(d.id, d.version) for d in docs if d.id != "T-002"}
    for query in ("Cardiovex dose", "respizan injection thigh", "flying with pens"):
        a, b = flat.decide(query, allowed), reloaded.decide(query, allowed)
        assert [c[0] for c in a.candidate_ids] == [c[0] for c in b.candidate_ids]
        assert all(c[0] != "T-002" for c in b.candidate_ids)


def test_fusion_weights_come_from_the_policy_and_round_trip(tmp_path: Path) -> None:
    from knowledge.policy import Calibrator
    from knowledge.retrieval import Fusion

    cal = Calibrator((20.0, 0.0, 0.0, 0.0), -14.0, 0.5)
    fusion = Fusion(question=0.25, body=0.3, best=0.45, lexical=0.08, lexical_raw=0.12)
    policy = AnswerPolicy(0.08, {"hybrid": cal, "bm25": cal, "dense": cal}, fusion)
    assert AnswerPolicy.from_json(policy.to_json()) == policy
    legacy = AnswerPolicy(0.05, {"hybrid": cal})
    assert legacy.fusion_weights() == Fusion(0.7, 0.3, 0.0, 0.05, 0.0)
    assert AnswerPolicy.from_json(legacy.to_json()) == legacy

    docs = [IndexDoc(i["id"], 1, i["title"], tuple(i["questions"]), i["body"]) for i in small_items()]
    kb = KnowledgeBase(tmp_path, embedder=HashingEmbedder(), index_factory=NumpyVectorIndex, policy=policy)
    kb.sync(docs)
    assert kb.retriever.fusion == fusion
    sig = kb.retriever.signals("cardiovex dose")
    top = kb.decide("cardiovex dose", None).ranking.candidates[0]
    j = sig.index.tolist().index(top.index)
    q, b = float(sig.question[j]), float(sig.body[j])
    expected = (0.25 * q + 0.3 * b + 0.45 * max(q, b)) + 0.08 * float(sig.lexical[j]) \
        + 0.12 * float(sig.lexical_raw[j])
    assert top.score == pytest.approx(expected, abs=1e-6)
    assert float(sig.lexical.max()) == pytest.approx(1.0)  # relative to the best allowed item


def test_signals_pool_holds_only_allowed_items(tmp_path: Path, test_policy: AnswerPolicy) -> None:
    docs = [IndexDoc(i["id"], 1, i["title"], tuple(i["questions"]), i["body"]) for i in small_items()]
    r = HybridRetriever.build(docs, HashingEmbedder(), index_factory=NumpyVectorIndex)
    mask = np.array([True, False, True, True])
    sig = r.signals("Cardiovex dose", mask)
    assert 1 not in sig.index.tolist() and len(sig.index) > 0
    assert sig.matrix().shape == (len(sig.index), 5)
    assert len(r.signals("Cardiovex dose", np.zeros(4, dtype=bool)).index) == 0


@pytest.mark.slow
def test_single_query_fast_path_matches_batch_encoding_and_is_cached() -> None:
    from knowledge.embedding import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder(cache_size=2)
    texts = ["cardiovex max dose in CKD", "how do I store the respizan pen?"]
    batch = emb.embed(texts)
    one = emb.embed([texts[0]])
    np.testing.assert_allclose(one[0], batch[0], atol=1e-5)
    assert emb.embed([texts[0]]) is one  # LRU hit
    emb.embed(["a"]), emb.embed(["b"])
    assert emb.embed([texts[0]]) is not one  # evicted after two newer queries


@pytest.mark.parametrize("factory", [FaissVectorIndex, FaissIVFVectorIndex])
def test_gate_selector_is_reused_only_for_the_same_read_only_allowed_array(
        factory: Callable[[int], VectorIndex]) -> None:
    vecs = HashingEmbedder().embed(["storage of tablets", "dose of tablets", "injection site", "travel"])
    index = factory(vecs.shape[1])
    index.add(vecs)
    a = np.array([0, 2], dtype=np.int64)
    a.flags.writeable = False
    b = np.array([1, 3], dtype=np.int64)
    b.flags.writeable = False
    for allowed in (a, a, b, a):
        _, ids = index.search(vecs[1:2], 4, allowed)
        assert set(ids[0].tolist()) == set(allowed.tolist())
    w = np.array([0, 1], dtype=np.int64)
    index.search(vecs[1:2], 4, w)
    w[1] = 3  # a writeable array may change between calls: never served from the cache
    _, ids = index.search(vecs[1:2], 4, w)
    assert set(ids[0].tolist()) == {0, 3}


def test_retriever_keeps_one_passage_list_per_gate_mask() -> None:
    docs = [IndexDoc(i["id"], 1, i["title"], tuple(i["questions"]), i["body"]) for i in small_items()]
    r = HybridRetriever.build(docs, HashingEmbedder(), index_factory=NumpyVectorIndex)
    m1 = np.array([True, False, True, True])
    first = r._passages_of(m1)
    assert r._passages_of(m1.copy()) is first and not first.flags.writeable
    other = r._passages_of(np.array([False, True, False, False]))
    assert set(r.passage_doc[other].tolist()) == {1}
    assert set(r.passage_doc[first].tolist()) == {0, 2, 3}
