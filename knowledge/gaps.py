"""Content-gap report: what HCPs asked that the library could not answer well.

Sources: ``answer`` rows the bot escalated, and answers rated "not helpful" (read from
the feedback table when it exists). Questions are clustered by TF-IDF cosine
(average-linkage agglomerative clustering) so content teams see themes, counts and
examples instead of a raw log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from knowledge.models import Answer, Decision

LABEL_CHARS = 90


def typical_label(text: str, limit: int = LABEL_CHARS) -> str:
    """A cluster's label: its most typical question, whole words, at most ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0]
    return cut + "…"


@dataclass(frozen=True)
class GapCluster:
    label: str                      # the question closest to the cluster's centre (most typical)
    count: int
    escalated: int
    not_helpful: int
    examples: list[str]             # most typical first
    terms: tuple[str, ...] = ()     # characteristic terms, for search and detail

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "count": self.count, "escalated": self.escalated,
                "not_helpful": self.not_helpful, "examples": self.examples, "terms": list(self.terms)}


def _not_helpful_answer_ids(session: Session, since: datetime) -> set[str]:
    """Answer ids rated not helpful, from whichever feedback table carries ``answer_id``."""
    insp = inspect(session.connection())  # same connection: SQLite writers hold BEGIN IMMEDIATE
    ids: set[str] = set()
    for table in insp.get_table_names():
        cols = {c["name"] for c in insp.get_columns(table)}
        if "answer_id" not in cols or table == "answer":
            continue
        if "helpful" in cols:
            cond = "helpful = :no"
            params: dict[str, Any] = {"no": False}
        elif "rating" in cols:
            cond = "rating IN ('not_helpful', 'not helpful', 'unhelpful')"
            params = {}
        else:
            continue
        rows = session.execute(text(f"SELECT answer_id FROM {table} WHERE {cond} AND answer_id IS NOT NULL"),
                               params)
        ids.update(str(r[0]) for r in rows)
    return ids


def gap_report(session: Session, *, since: datetime, min_count: int = 1, max_examples: int = 5,
               distance_threshold: float = 0.85) -> list[GapCluster]:
    answers = list(session.scalars(select(Answer).where(Answer.created_at >= since)
                                   .order_by(Answer.created_at, Answer.id)))
    unhelpful = _not_helpful_answer_ids(session, since)
    picked = [(a.query.strip(), a.decision == Decision.escalate, a.id in unhelpful) for a in answers
              if a.decision == Decision.escalate or a.id in unhelpful]
    clusters = cluster_questions(picked, max_examples=max_examples, distance_threshold=distance_threshold)
    return [c for c in clusters if c.count >= min_count]


def cluster_questions(picked: list[tuple[str, bool, bool]], *, max_examples: int = 5,
                      distance_threshold: float = 0.85) -> list[GapCluster]:
    """Cluster (question, escalated, not_helpful) triples into themes, biggest first."""
    picked = [(p[0].strip(), p[1], p[2]) for p in picked if p[0].strip()]
    if not picked:
        return []
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [p[0] for p in picked]
    vec = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), sublinear_tf=True)
    try:
        matrix = vec.fit_transform(texts)
    except ValueError:  # only stop words
        return [GapCluster("(unclassifiable)", len(picked), sum(p[1] for p in picked),
                           sum(p[2] for p in picked), texts[:max_examples])]
    if len(texts) == 1:
        labels = [0]
    else:
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                        distance_threshold=distance_threshold)
        labels = [int(x) for x in model.fit_predict(matrix.toarray())]
    terms = vec.get_feature_names_out()
    clusters: list[GapCluster] = []
    for label in sorted(set(labels)):
        members = [i for i, lab in enumerate(labels) if lab == label]
        centroid = matrix[members].mean(axis=0).A1
        top_terms = [str(terms[j]) for j in centroid.argsort()[::-1][:3] if centroid[j] > 0]
        # rows are L2-normalised: the dot product with the centroid ranks members by typicality
        closeness = matrix[members] @ centroid
        typical = [members[k] for k in sorted(range(len(members)), key=lambda k: (-float(closeness[k]), k))]
        examples = list(dict.fromkeys(texts[i] for i in typical))[:max_examples]
        clusters.append(GapCluster(
            label=typical_label(examples[0]) if examples else "(misc)", count=len(members),
            escalated=sum(picked[i][1] for i in members), not_helpful=sum(picked[i][2] for i in members),
            examples=examples, terms=tuple(top_terms),
        ))
    clusters.sort(key=lambda c: (-c.count, c.label))
    return clusters
