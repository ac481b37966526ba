"""Which clustering makes the best feedback themes? NMI / adjusted Rand on CLINC150 intents.

    nice -n 5 .venv/bin/python -m benchmarks.themes_eval [--write] [--seeds 5]
    nice -n 5 .venv/bin/python -m benchmarks.themes_eval --timing 100000 [--embed-sample 2000]

Intents stand in for themes: short user utterances, many paraphrases per intent, like feedback
comments. A pool of 40 intents x 25 utterances is drawn once from ../shared/eval/clinc150/
train.jsonl (the "oos" rows are left out: they have no common theme) and embedded once with
all-MiniLM-L6-v2. Each seed then samples 20 of the 40 intents in two shapes:

- balanced: 25 utterances per intent (500 rows);
- skewed: 3-25 utterances per intent (a few big themes and a long tail, as in real feedback).

Every method picks its own number of clusters (silhouette, a distance threshold, or density);
none sees the labels. A TF-IDF + Ward baseline shows what the embeddings add, and k-means with
the true k is printed as a reference that no production run could use. The method with the
best mean NMI wins; ``feedback.clustering.DEFAULT_METHOD`` is set from that.

``--timing N`` measures the theme job (feedback.themes.compute_themes) on N synthetic comments:
MiniLM embedding is timed on ``--embed-sample`` unique comments and extrapolated to N (the
full run is hours on two loaded cores); the rest of the job — first-class detection,
clustering, labels, trends, redaction of examples, sentiment — runs on all N rows with
stand-in vectors of the same shape.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from feedback.clustering import METHODS, Labels, scores

REPO = Path(__file__).resolve().parent.parent
CLINC = REPO.parent / "shared" / "eval" / "clinc150" / "train.jsonl"
RESULTS = Path(__file__).resolve().parent / "RESULTS-themes.md"
CACHE = REPO / "var" / "cache" / "themes_eval_pool.npz"
POOL_INTENTS, PER_INTENT, SAMPLE_INTENTS = 40, 25, 20


def load_pool(seed: int = 0) -> tuple[list[str], list[str]]:
    by_intent: dict[str, list[str]] = defaultdict(list)
    for line in CLINC.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["intent"] != "oos":
            by_intent[row["intent"]].append(row["text"])
    rng = random.Random(seed)
    intents = rng.sample(sorted(by_intent), POOL_INTENTS)
    texts, gold = [], []
    for intent in intents:
        for text in rng.sample(by_intent[intent], PER_INTENT):
            texts.append(text)
            gold.append(intent)
    return texts, gold


def embed_pool(texts: list[str]) -> tuple[np.ndarray[Any, Any], float]:
    if CACHE.exists():
        data = np.load(CACHE, allow_pickle=False)
        if list(data["texts"]) == texts:
            return data["vectors"], float(data["seconds"])
    from knowledge.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.load()
    start = time.perf_counter()
    vectors = embedder.embed(texts)
    seconds = time.perf_counter() - start
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, texts=np.array(texts), vectors=vectors, seconds=seconds)
    return vectors, seconds


def tfidf_vectors(texts: list[str]) -> np.ndarray[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    matrix = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit_transform(texts)
    return np.asarray(matrix.toarray(), dtype=np.float32)


def samples(gold: list[str], seed: int) -> dict[str, list[int]]:
    rng = random.Random(1000 + seed)
    intents = sorted(set(gold))
    chosen = rng.sample(intents, SAMPLE_INTENTS)
    rows_by_intent = {i: [r for r, g in enumerate(gold) if g == i] for i in chosen}
    balanced = [r for i in chosen for r in rows_by_intent[i]]
    skewed = []
    for rank, intent in enumerate(chosen):
        size = max(3, round(PER_INTENT / (1 + rank * 0.35)))  # a few big themes, a long tail
        skewed += rows_by_intent[intent][:size]
    return {"balanced": balanced, "skewed": skewed}


def kmeans_true_k(vectors: np.ndarray[Any, Any], k: int, seed: int) -> Labels:
    from sklearn.cluster import KMeans

    labels: Labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(vectors).astype(np.int64)
    return labels


def evaluate(seeds: int) -> tuple[str, dict[str, dict[str, list[float]]], float, int]:
    texts, gold = load_pool()
    vectors, embed_seconds = embed_pool(texts)
    tfidf = tfidf_vectors(texts)
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for seed in range(seeds):
        for shape, rows in samples(gold, seed).items():
            g = [gold[r] for r in rows]
            v = vectors[rows]
            runs: dict[str, tuple[Any, np.ndarray[Any, Any]]] = {name: (fn, v) for name, fn in METHODS.items()}
            runs["tfidf_agglomerative_silhouette"] = (METHODS["agglomerative_silhouette"], tfidf[rows])
            runs["(reference) kmeans_true_k"] = (
                lambda x, seed, k=len(set(g)): kmeans_true_k(x, k, seed), v)
            for name, (fn, x) in runs.items():
                start = time.perf_counter()
                labels = fn(x, seed=seed)
                elapsed = time.perf_counter() - start
                nmi, ari = scores(g, labels)
                key = f"{shape}"
                results[name][f"{key}_nmi"].append(nmi)
                results[name][f"{key}_ari"].append(ari)
                results[name][f"{key}_k"].append(float(len(set(labels.tolist()) - {-1})))
                results[name][f"{key}_noise"].append(float((labels < 0).mean()))
                results[name]["seconds"].append(elapsed)
            print(f"seed {seed} {shape}: done", flush=True)
    selectable = [m for m in results if not m.startswith("(reference)")]
    winner = max(selectable, key=lambda m: statistics.mean(results[m]["balanced_nmi"] + results[m]["skewed_nmi"]))
    return winner, results, embed_seconds, len(texts)


def table(results: dict[str, dict[str, list[float]]]) -> str:
    def cell(values: list[float], digits: int = 3) -> str:
        mean = statistics.mean(values)
        spread = statistics.pstdev(values)
        return f"{mean:.{digits}f} ± {spread:.{digits}f}"

    lines = ["| method | NMI balanced | ARI balanced | k found (20 true) | NMI skewed | ARI skewed | "
             "k found skewed | noise share | s / run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = sorted(results, key=lambda m: -statistics.mean(results[m]["balanced_nmi"] + results[m]["skewed_nmi"]))
    for m in order:
        r = results[m]
        lines.append(f"| {m} | {cell(r['balanced_nmi'])} | {cell(r['balanced_ari'])} | "
                     f"{statistics.mean(r['balanced_k']):.1f} | {cell(r['skewed_nmi'])} | {cell(r['skewed_ari'])} | "
                     f"{statistics.mean(r['skewed_k']):.1f} | "
                     f"{statistics.mean(r['balanced_noise'] + r['skewed_noise']):.2f} | "
                     f"{statistics.mean(r['seconds']):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    parser.add_argument("--timing", type=int, default=0, help="time the theme job on N synthetic comments")
    parser.add_argument("--embed-sample", type=int, default=2000)
    args = parser.parse_args()
    if args.timing:
        from benchmarks.themes_timing import run_timing

        print(run_timing(args.timing, args.embed_sample))
        return
    winner, results, embed_seconds, n = evaluate(args.seeds)
    out = table(results)
    print(out)
    print(f"winner by mean NMI: {winner}; pool embedding {n} utterances in {embed_seconds:.1f} s "
          f"({n / embed_seconds:.0f}/s)")
    if args.write:
        print(f"(update {RESULTS} by hand with the table above)")


if __name__ == "__main__":
    main()
