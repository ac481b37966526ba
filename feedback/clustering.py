"""Clustering of sentence embeddings for feedback themes, and the methods the benchmark compares.

All methods take unit-length rows (MiniLM vectors) and return one integer label per row
(-1 = noise, HDBSCAN only). None of them sees labels: the number of clusters is chosen by the
silhouette score or by a fixed distance threshold, so any of them can run in production.
``benchmarks/themes_eval.py`` scores them by NMI / adjusted Rand against CLINC150 intents and
``DEFAULT_METHOD`` is the winner there (see benchmarks/RESULTS-themes.md).

Large inputs: the chosen method is fitted on at most ``fit_sample`` rows and every other row
goes to its nearest cluster centroid, so a 100k-comment run costs one small clustering plus a
matrix product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from knowledge.embedding import Vectors

Labels = npt.NDArray[np.int64]

# Chosen by benchmarks/themes_eval.py (mean NMI over intent samples); see RESULTS-themes.md.
DEFAULT_METHOD = "agglomerative_silhouette"
FIT_SAMPLE = 4000
SILHOUETTE_SAMPLE = 2000


def k_grid(n: int, k_min: int = 2, k_max: int = 60) -> list[int]:
    """Candidate cluster counts for ``n`` rows: about 12 values, denser for small k."""
    upper = max(k_min, min(k_max, n // 4))
    grid = sorted({round(k) for k in np.geomspace(k_min, upper, num=12)} | {upper})
    return [k for k in grid if k_min <= k < n]


def _silhouette(vectors: Vectors, labels: Labels, seed: int) -> float:
    from sklearn.metrics import silhouette_score

    if len(set(labels.tolist())) < 2:
        return -1.0
    size = min(SILHOUETTE_SAMPLE, len(vectors))
    return float(silhouette_score(vectors, labels, metric="cosine", sample_size=size, random_state=seed))


def _best_by_silhouette(vectors: Vectors, fit: Callable[[int], Labels], seed: int) -> Labels:
    best: tuple[float, Labels] | None = None
    for k in k_grid(len(vectors)):
        labels = fit(k)
        score = _silhouette(vectors, labels, seed)
        if best is None or score > best[0]:
            best = (score, labels)
    if best is None:
        return np.zeros(len(vectors), dtype=np.int64)
    return best[1]


def kmeans_silhouette(vectors: Vectors, seed: int = 0) -> Labels:
    from sklearn.cluster import KMeans

    def fit(k: int) -> Labels:
        labels: Labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(vectors).astype(np.int64)
        return labels

    return _best_by_silhouette(vectors, fit, seed)


def agglomerative_silhouette(vectors: Vectors, seed: int = 0) -> Labels:
    """Ward linkage (on unit vectors, Euclidean ~ cosine); the tree is built once and cut per k."""
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(vectors, method="ward")

    def fit(k: int) -> Labels:
        labels: Labels = (fcluster(tree, t=k, criterion="maxclust") - 1).astype(np.int64)
        return labels

    return _best_by_silhouette(vectors, fit, seed)


def agglomerative_average(vectors: Vectors, seed: int = 0, threshold: float = 0.6) -> Labels:
    """Average linkage on cosine distance, cut at a fixed distance (no k to choose)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(vectors, method="average", metric="cosine")
    labels: Labels = (fcluster(tree, t=threshold, criterion="distance") - 1).astype(np.int64)
    return labels


def hdbscan(vectors: Vectors, seed: int = 0, min_cluster_size: int = 5) -> Labels:
    """sklearn HDBSCAN; noise rows keep -1."""
    from sklearn.cluster import HDBSCAN

    model = HDBSCAN(min_cluster_size=min_cluster_size, metric="euclidean", copy=True)
    labels: Labels = model.fit_predict(vectors).astype(np.int64)
    return labels


def hdbscan_assigned(vectors: Vectors, seed: int = 0, min_cluster_size: int = 5) -> Labels:
    """HDBSCAN, then every noise row joins its nearest cluster centroid."""
    labels = hdbscan(vectors, seed, min_cluster_size)
    if (labels >= 0).any() and (labels < 0).any():
        centroids, ids = centroids_of(vectors, labels)
        noise = labels < 0
        labels[noise] = ids[np.argmax(vectors[noise] @ centroids.T, axis=1)]
    return labels


METHODS: dict[str, Callable[..., Labels]] = {
    "kmeans_silhouette": kmeans_silhouette,
    "agglomerative_silhouette": agglomerative_silhouette,
    "agglomerative_average": agglomerative_average,
    "hdbscan": hdbscan,
    "hdbscan_assigned": hdbscan_assigned,
}


def centroids_of(vectors: Vectors, labels: Labels) -> tuple[Vectors, Labels]:
    """Unit-length mean vector per cluster (noise excluded) and the cluster id of each row."""
    ids = np.array(sorted({int(x) for x in labels.tolist() if x >= 0}), dtype=np.int64)
    rows = [vectors[labels == i].mean(axis=0) for i in ids]
    cents = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, vectors.shape[1]), np.float32)
    norms = np.linalg.norm(cents, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (cents / norms).astype(np.float32), ids


def cluster(vectors: Vectors, method: str = DEFAULT_METHOD, *, seed: int = 0,
            fit_sample: int = FIT_SAMPLE) -> Labels:
    """Cluster labels for every row; above ``fit_sample`` rows, fit on a sample and assign the rest."""
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; one of {', '.join(METHODS)}")
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n < 4:
        return np.zeros(n, dtype=np.int64)
    if n <= fit_sample:
        return METHODS[method](vectors, seed=seed)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, fit_sample, replace=False))
    sample_labels = METHODS[method](vectors[sample], seed=seed)
    return assign_nearest(vectors, vectors[sample], sample_labels)


def assign_nearest(vectors: Vectors, fitted: Vectors, fitted_labels: Labels, batch: int = 20000) -> Labels:
    """Each row of ``vectors`` labelled with the cluster whose centroid is closest (cosine)."""
    centroids, ids = centroids_of(fitted, fitted_labels)
    if len(ids) == 0:
        return np.full(len(vectors), -1, dtype=np.int64)
    out = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), batch):
        block = vectors[start:start + batch]
        out[start:start + batch] = ids[np.argmax(block @ centroids.T, axis=1)]
    return out


def scores(gold: Sequence[str], labels: Labels) -> tuple[float, float]:
    """(NMI, adjusted Rand) of ``labels`` against ``gold``; noise (-1) rows count as one cluster."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred = labels.tolist()
    return float(normalized_mutual_info_score(gold, pred)), float(adjusted_rand_score(gold, pred))
