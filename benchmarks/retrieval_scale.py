"""How retrieval scales: synthetic libraries of 1k, 10k and 100k items.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval_scale.py [--sizes 1000 10000 100000]

For each size: index build rate (embedding + faiss + BM25), index memory, and the latency of
one full hybrid query — query normalisation, query embedding with all-MiniLM-L6-v2 on CPU,
gate mask (5% of items gated), faiss IndexFlatIP search restricted to allowed passages,
BM25, fusion — p50/p95 over 200 queries, one at a time.

Embedding 300k passages on 2 shared cores would take far longer than the benchmark's CPU
budget, so sizes above ``--embed-limit`` items (default 10k) reuse the real embeddings of the
largest embedded library, tiled with small Gaussian noise and renormalised: search cost of a
flat index does not depend on the vector values, and the build-rate line for those sizes says
"embedding extrapolated". BM25 is always built on the real synthetic text.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from knowledge.embedding import (  # noqa: E402
    FaissIVFVectorIndex,
    FaissVectorIndex,
    SentenceTransformerEmbedder,
    VectorIndex,
)
from knowledge.expand import expand_query  # noqa: E402
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
    parser.add_argument("--ivf-from", type=int, default=100000,
                        help="also measure faiss IVF (nlist 512, nprobe 16) from this many items on")
    args = parser.parse_args(argv)
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])
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
        for kind in ("flat", "ivf") if n >= args.ivf_from else ("flat",):
            rows.append(measure(n, kind, docs, texts, owner, vecs, embed_s, extrapolated, rss0, embedder,
                                args.queries))
            report(rows[-1:], header=len(rows) == 1)
        del vecs
    print(f"load average at the end: {os.getloadavg()} on {os.cpu_count()} cores")
    return 0


def measure(n: int, kind: str, docs: list[IndexDoc], texts: list[str], owner: list[int], vecs: np.ndarray,
            embed_s: float, extrapolated: bool, rss0: float, embedder: SentenceTransformerEmbedder,
            n_queries: int) -> tuple[object, ...]:
    t1 = time.perf_counter()
    index: VectorIndex = (FaissVectorIndex(embedder.dim) if kind == "flat"
                          else FaissIVFVectorIndex(embedder.dim))
    index.add(vecs.astype(np.float32))
    retriever = HybridRetriever(docs, embedder, index, np.asarray(owner, dtype=np.int64))
    build_other_s = time.perf_counter() - t1
    faiss_mb = index.memory_bytes() / 2**20  # type: ignore[attr-defined]
    m = retriever.bm25.matrix
    bm25_mb = (m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) / 2**20
    rss1 = rss_mb()
    rng2 = random.Random(n)
    mask = np.array([rng2.random() >= 0.05 for _ in range(n)], dtype=bool)
    queries = []
    for _ in range(n_queries):
        d = docs[rng2.randrange(n)]
        queries.append(rng2.choice([f"{d.title}?", f"{d.title.split()[0]} {d.title.split()[-1]} info",
                                    d.questions[0].lower()]))
    lat, emb_lat, search_lat = [], [], []
    for q in queries:
        s = time.perf_counter()
        retriever.rank(q, mask, method="hybrid", k=5)
        lat.append((time.perf_counter() - s) * 1000)
        s = time.perf_counter()
        qv = embedder.embed([expand_query(q)])
        emb_lat.append((time.perf_counter() - s) * 1000)
        s = time.perf_counter()
        retriever.rank(q, mask, method="hybrid", k=5, vectors=lambda _t, v=qv: v)
        search_lat.append((time.perf_counter() - s) * 1000)
    p50, p95 = np.percentile(lat, [50, 95])
    e50, e95 = np.percentile(emb_lat, [50, 95])
    s50, s95 = np.percentile(search_lat, [50, 95])
    total_build = embed_s + build_other_s
    print(f"{n} items ({kind}) done: p50 {p50:.1f} ms p95 {p95:.1f} ms", file=sys.stderr, flush=True)
    return (f"{n:,} ({kind})", len(texts), p50, p95, e50, e95, s50, s95, len(texts) / total_build, embed_s,
            build_other_s, faiss_mb, bm25_mb, rss1 - rss0, extrapolated)


def report(rows: list[tuple[object, ...]], header: bool = True) -> None:
    if header:
        print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} cores")
        print("| items | passages | query p50 / p95 (ms) | of which embedding p50 / p95 | gate+search+fusion "
              "p50 / p95 | build rate (passages/s) | embedding (s) | faiss + BM25 build (s) | faiss MB | BM25 MB "
              "| RSS growth MB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, np_, p50, p95, e50, e95, s50, s95, rate, emb, other, fmb, bmb, rss, ex in rows:  # type: ignore[misc]
        emb_s = f"{emb:.1f}" + (" (extrapolated)" if ex else "")
        print(f"| {n} | {np_:,} | {p50:.1f} / {p95:.1f} | {e50:.1f} / {e95:.1f} | {s50:.1f} / {s95:.1f} "
              f"| {rate:,.0f} | {emb_s} | {other:.1f} | {fmb:.0f} | {bmb:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
