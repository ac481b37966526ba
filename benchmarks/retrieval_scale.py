"""How retrieval scales: synthetic libraries of 1k, 10k and 100k items.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval_scale.py [--sizes 1000 10000 100000] [--backend onnx]

For each size: index build rate (embedding + faiss + BM25), index memory, and the latency of
one full hybrid query — query normalisation, query embedding with all-MiniLM-L6-v2 on CPU
(the product's single-query path, its LRU cache switched off and every query distinct, so each
one is really embedded), gate mask (5% of items gated), faiss search restricted to allowed
passages, BM25, fusion, and the second stage (``knowledge/rerank.json``: aspect features and
the pair scorer over the top 10; body aspects computed once at build) — p50/p95 over
``--queries`` queries, one at a time; also the CPU time
of the query thread (less sensitive to other processes than wall time) and the machine's load
average while the queries ran.

The vector index is the one ``KnowledgeBase`` picks (:func:`knowledge.embedding.vector_index_for`:
exact ``IndexFlatIP`` below ``IVF_MIN_PASSAGES`` passages, ``IndexIVFFlat`` from there on);
``--compare-flat`` also measures Flat where the product uses IVF, and how often the two agree
on the top-1 item.

Embedding 300k passages on 2 shared cores would take far longer than the benchmark's CPU
budget, so sizes above ``--embed-limit`` items (default 10k) reuse the real embeddings of the
largest embedded library, tiled with small Gaussian noise and renormalised (search cost does
not depend on the vector values), and their build-rate line says "embedding extrapolated".
``--embed-limit 0``: random unit vectors, search only. BM25 is always built on the real text.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from knowledge.embedding import (  # noqa: E402
    BACKENDS,
    FaissVectorIndex,
    SentenceTransformerEmbedder,
    VectorIndex,
    vector_index_for,
)
from knowledge.expand import expand_query  # noqa: E402
from knowledge.policy import load_policy  # noqa: E402
from knowledge.rerank import candidate_features  # noqa: E402
from knowledge.retrieval import HybridRetriever, IndexDoc  # noqa: E402

TOPICS = [
    ("dose", "What is the recommended dose of {p}?", "The recommended dose of {p} is {n} mg once daily."),
    ("storage", "How should {p} be stored?", "Store {p} below {n} degrees in the original pack."),
    ("missed dose", "What if a dose of {p} is missed?", "Take the missed dose of {p} within {n} hours."),
    ("contraindications", "Who should not take {p}?", "{p} is contraindicated in severe hepatic impairment."),
    ("interactions", "Does {p} interact with warfarin?", "Monitor INR for {n} days when starting {p}."),
    ("pregnancy", "Can {p} be used in pregnancy?", "Avoid {p} in pregnancy; stop {n} weeks before conception."),
    ("renal", "Does {p} need adjustment in renal impairment?", "Reduce {p} to {n} mg if CrCl is below 30."),
    ("side effects", "What are the side effects of {p}?", "Headache occurred in {n}% of patients on {p}."),
    ("administration", "How is {p} administered?", "Inject {p} subcutaneously every {n} weeks."),
    ("copay", "Is there a copay card for {p}?", "Eligible patients pay as little as ${n} for {p}."),
]
SYLL = ["ca", "lo", "vex", "ri", "zan", "mab", "glu", "rel", "ter", "no", "pi", "dra", "sul", "fen", "xi"]


def synthetic_library(n: int, seed: int = 7) -> list[IndexDoc]:
    rng = random.Random(seed)
    n_products = max(1, n // len(TOPICS))
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n_products:
        name = "".join(rng.choice(SYLL) for _ in range(rng.randint(2, 4))).capitalize() + str(
            rng.randint(1, 99))
        if name not in seen:
            seen.add(name)
            names.append(name)
    docs = []
    for i in range(n):
        p = names[i // len(TOPICS) % len(names)]
        topic, q, body = TOPICS[i % len(TOPICS)]
        k = rng.randint(2, 90)
        docs.append(IndexDoc(f"SYN-{i:06d}", 1, f"{p} {topic}", (q.format(p=p),),
                             body.format(p=p, n=k) + f" Reference {i}."))
    return docs


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--embed-limit", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--compare-flat", action="store_true",
                        help="where the product picks IVF, also measure an exact Flat index")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="single-query embedding backend (default: CONCIERGE_EMBED_BACKEND, else torch)")
    args = parser.parse_args(argv)
    if any(n <= 0 for n in args.sizes):
        parser.error("--sizes: every size must be a positive number of items")
    args.sizes = sorted(set(args.sizes))
    if args.embed_limit > 0 and args.sizes[0] > args.embed_limit:
        parser.error(f"--sizes: sizes above --embed-limit ({args.embed_limit}) reuse the embeddings of a smaller "
                     f"size that is really embedded: add one ≤ {args.embed_limit} (e.g. --sizes 1000 "
                     f"{' '.join(map(str, args.sizes))}), or --embed-limit 0 for random vectors")
    embedder = SentenceTransformerEmbedder(cache_size=0, backend=args.backend)  # no LRU: every query is embedded
    embedder.embed(["warm up"])
    print(f"query embedding backend: {embedder.backend} (requested {embedder.requested_backend}); torch threads: "
          f"{__import__('torch').get_num_threads()}; load average at start: "
          f"{os.getloadavg()} on {os.cpu_count()} cores", flush=True)
    rows = []
    base_vectors: np.ndarray | None = None
    embed_rate: float | None = None
    for n in args.sizes:
        docs = synthetic_library(n)
        texts: list[str] = []
        owner: list[int] = []
        for i, d in enumerate(docs):
            for p in d.passages():
                texts.append(p)
                owner.append(i)
        rss0 = rss_mb()
        t0 = time.perf_counter()
        extrapolated = n > args.embed_limit
        if args.embed_limit == 0:  # search-only run: random unit vectors stand in for passages
            vecs = np.random.default_rng(0).normal(size=(len(texts), embedder.dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            embed_s, embed_rate = float("nan"), float("nan")
        elif not extrapolated:
            vecs = embedder.embed(texts)
            embed_s = time.perf_counter() - t0
            embed_rate = len(texts) / embed_s
            base_vectors = vecs
        else:
            assert base_vectors is not None and embed_rate is not None
            rng = np.random.default_rng(0)
            reps = -(-len(texts) // len(base_vectors))
            vecs = np.tile(base_vectors, (reps, 1))[: len(texts)]
            vecs = vecs + rng.normal(0, 0.02, vecs.shape).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            embed_s = len(texts) / embed_rate
        product_index = vector_index_for(embedder.dim, len(texts))
        kinds = ["product"] + (["flat"] if args.compare_flat and not isinstance(product_index, FaissVectorIndex)
                               else [])
        tops: dict[str, list[str]] = {}
        for kind in kinds:
            index = product_index if kind == "product" else FaissVectorIndex(embedder.dim)
            row, tops[kind] = measure(n, index, docs, texts, owner, vecs, embed_s, extrapolated, rss0, embedder,
                                      args.queries)
            rows.append(row)
            report(rows[-1:], header=len(rows) == 1)
            del index
        if "flat" in tops:
            agree = np.mean([a == b for a, b in zip(tops["product"], tops["flat"], strict=True)])
            print(f"  top-1 agreement IVF vs exact Flat at {n:,} items: {agree:.3f}", flush=True)
        del product_index
        del vecs
    print(f"load average at the end: {os.getloadavg()} on {os.cpu_count()} cores")
    return 0


def measure(n: int, index: VectorIndex, docs: list[IndexDoc], texts: list[str], owner: list[int],
            vecs: np.ndarray, embed_s: float, extrapolated: bool, rss0: float,
            embedder: SentenceTransformerEmbedder, n_queries: int) -> tuple[tuple[object, ...], list[str]]:
    kind = "flat" if isinstance(index, FaissVectorIndex) else "IVF"
    t1 = time.perf_counter()
    index.add(vecs.astype(np.float32))
    retriever = HybridRetriever(docs, embedder, index, np.asarray(owner, dtype=np.int64),
                                fusion=load_policy().fusion_weights())
    build_other_s = time.perf_counter() - t1
    faiss_mb = index.memory_bytes() / 2**20  # type: ignore[attr-defined]
    m = retriever.bm25.matrix
    bm25_mb = (m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) / 2**20
    rss1 = rss_mb()
    rng2 = random.Random(n)
    mask = np.array([rng2.random() >= 0.05 for _ in range(n)], dtype=bool)
    queries: list[str] = []
    seen: set[str] = set()
    while len(queries) < min(n_queries, n):  # distinct queries: each one is embedded for real
        d = docs[rng2.randrange(n)]
        q = rng2.choice([f"{d.title}?", f"{d.title.split()[0]} {d.title.split()[-1]} info",
                         d.questions[0].lower(), f"pt asking: {d.questions[0].lower()}"])
        if q not in seen:
            seen.add(q)
            queries.append(q)
    reranker = load_policy().reranker
    memo: dict[int, np.ndarray] = {}
    t2 = time.perf_counter()
    if reranker is not None:  # body aspects: once per index, as KnowledgeBase.sync does
        memo = {i: reranker.body_aspects_of(d.body) for i, d in enumerate(docs)}
    build_other_s += time.perf_counter() - t2

    def answer(q: str, vectors: Callable[[str], np.ndarray] | None = None) -> int | None:
        """The product's query: hybrid ranking, then the second stage when one is shipped."""
        if reranker is None:
            ranking = retriever.rank(q, mask, method="hybrid", k=5, vectors=vectors)
            return ranking.candidates[0].index if ranking.candidates else None
        index, x = candidate_features(reranker, retriever, memo, q, mask, vectors)
        if len(index) == 0:
            return None
        p = reranker.scorer.probability(x)
        return int(index[int(np.argmax(p))])

    lat, cpu, emb_lat, search_lat, stage2, tops = [], [], [], [], [], []
    load0 = os.getloadavg()[0]
    for q in queries:
        s, c = time.perf_counter(), time.thread_time()
        top = answer(q)
        lat.append((time.perf_counter() - s) * 1000)
        cpu.append((time.thread_time() - c) * 1000)
        tops.append(docs[top].id if top is not None else "")
        s = time.perf_counter()
        qv = embedder.embed([expand_query(q)])
        emb_lat.append((time.perf_counter() - s) * 1000)
        s = time.perf_counter()
        answer(q, vectors=_fixed(qv))
        search_lat.append((time.perf_counter() - s) * 1000)
        s = time.perf_counter()
        retriever.rank(q, mask, method="hybrid", k=10, vectors=_fixed(qv))
        stage2.append(search_lat[-1] - (time.perf_counter() - s) * 1000)
    load1 = os.getloadavg()[0]
    p50, p95 = np.percentile(lat, [50, 95])
    c50, c95 = np.percentile(cpu, [50, 95])
    e50, e95 = np.percentile(emb_lat, [50, 95])
    s50, s95 = np.percentile(search_lat, [50, 95])
    print(f"  {n} items: second stage (aspect features + pair scorer over the top 10) p50 / p95 "
          f"{np.percentile(stage2, 50):.2f} / {np.percentile(stage2, 95):.2f} ms "
          f"({'on' if reranker is not None else 'off: no knowledge/rerank.json'})", flush=True)
    total_build = embed_s + build_other_s
    print(f"{n} items ({kind}) done: p50 {p50:.1f} ms p95 {p95:.1f} ms", file=sys.stderr, flush=True)
    return (f"{n:,} ({kind})", len(texts), p50, p95, c50, c95, e50, e95, s50, s95, f"{load0:.1f} → {load1:.1f}",
            len(texts) / total_build, embed_s, build_other_s, faiss_mb, bm25_mb, rss1 - rss0, extrapolated), tops


def _fixed(v: np.ndarray) -> Callable[[str], np.ndarray]:
    return lambda _text: v


def report(rows: list[tuple[object, ...]], header: bool = True) -> None:
    if header:
        print("| items (index) | passages | query p50 / p95 (ms) | query CPU p50 / p95 (ms) | of which embedding "
              "p50 / p95 | gate+search+fusion p50 / p95 | load avg (1 min) | build rate (passages/s) "
              "| embedding (s) | faiss + BM25 build (s) | faiss MB | BM25 MB | RSS growth MB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (n, np_, p50, p95, c50, c95, e50, e95, s50, s95, load, rate, emb, other, fmb, bmb, rss,
         ex) in rows:
        emb_s = f"{emb:.1f}" + (" (extrapolated)" if ex else "")
        print(f"| {n} | {np_:,} | {p50:.1f} / {p95:.1f} | {c50:.1f} / {c95:.1f} | {e50:.1f} / {e95:.1f} "
              f"| {s50:.1f} / {s95:.1f} | {load} | {rate:,.0f} | {emb_s} | {other:.1f} | {fmb:.0f} | {bmb:.1f} "
              f"| {rss:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
