"""Feedback themes: first-class themes, clusters with terms, redacted quotes, stored runs, the CLI."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.orm import Session

from api.cli import main as cli_main
from api.conversations.models import Conversation
from feedback.clustering import METHODS, assign_nearest, cluster, k_grid, scores
from feedback.models import AnswerRating, FeedbackComment, FeedbackThemeRun
from feedback.themes import (
    FIRST_CLASS_KEYS,
    FeedbackItem,
    class_terms,
    compute_themes,
    first_class_of,
    latest_themes,
    run_themes,
    weekly,
)
from knowledge.embedding import HashingEmbedder

CANARIES = ("Okonkwo-Hartley", "07700 900461", "ines.vald@example.org", "7012345")

COMMENTS = [
    # first-class themes, several phrasings each
    "I want to talk to a real person, not a bot",
    "Can I speak to someone from medical information?",
    "please let me speak with a human",
    "You send me too many messages",
    "stop sending me reminders every day",
    "too many surveys, unsubscribe me",
    "The dosing leaflet is out of date",
    "this guideline is outdated, the label changed",
    "you sent me an old version of the SmPC",
    "I cannot log in to the portal",
    "the link to the PDF is broken",
    "access denied when I open the document",
    # a theme that is not first-class: samples
    "samples delivery was late again",
    "the samples delivery never arrived",
    "my samples delivery came late",
    "samples delivery takes weeks",
    # another: webinar
    "the webinar recording was great",
    "loved the webinar recording on asthma",
    "webinar recording please",
    "can you send the webinar recording",
    # PII in comments must never reach quotes, terms or labels
    f"Dr {CANARIES[0]} asked about the samples delivery, call {CANARIES[1]}",
    f"email {CANARIES[2]} about the webinar recording, GMC {CANARIES[3]}",
]


def _items(start: datetime) -> list[FeedbackItem]:
    items = [FeedbackItem("comment", f"c{i}", start + timedelta(days=i % 5, hours=i), text=t)
             for i, t in enumerate(COMMENTS)]
    items += [FeedbackItem("rating", f"r{i}", start + timedelta(days=i), reason=r)
              for i, r in enumerate(["not_relevant", "not_relevant", "unclear", None])]
    return items


def test_first_class_themes_are_found_by_their_rules() -> None:
    embedder = HashingEmbedder()
    texts = COMMENTS[:12]
    keys = first_class_of(texts, embedder.embed(texts), embedder)
    assert keys == ["wants_human"] * 3 + ["too_many_messages"] * 3 + ["content_out_of_date"] * 3 + \
        ["access_problem"] * 3


def test_compute_themes_names_counts_and_redacts() -> None:
    start = datetime(2031, 3, 2, 9, tzinfo=UTC)
    result = compute_themes(_items(start), HashingEmbedder())
    by_key = {t.key: t for t in result.themes}
    for key in FIRST_CLASS_KEYS:
        # the three rule matches each; the (fake-embedding) classifier may add a neighbour
        assert by_key[key].first_class and 3 <= by_key[key].count <= 4
    assert [t.first_class for t in result.themes][:4] == [True] * 4  # first-class themes lead
    assert by_key["answer_not_relevant"].count == 2 and by_key["answer_unclear"].count == 1
    assert by_key["answer_not_helpful"].count == 1
    assert result.comments == len(COMMENTS) and result.ratings == 4
    assert sum(t.count for t in result.themes) == len(COMMENTS) + 4
    everything = json.dumps([t.__dict__ for t in result.themes])
    for canary in CANARIES:
        assert canary not in everything
    for theme in result.themes:
        assert sum(n for _, n, _ in theme.trend) == theme.count
        assert -1.0 <= theme.sentiment <= 1.0
        assert len(theme.examples) <= 10
        assert len(theme.members) == theme.count  # each comment / vote it holds, for the drill-down
    members = [m for t in result.themes for m in t.members]
    assert len(members) == len(set(members)) == len(COMMENTS) + 4
    assert by_key["too_many_messages"].sentiment < 0
    terms = {term for t in result.themes for term in t.terms}
    assert not terms & {"name", "phone", "email", "licence", "dob"}  # placeholders are not terms


def test_clusters_are_labelled_by_their_characteristic_terms() -> None:
    result = compute_themes(_items(datetime(2031, 3, 2, tzinfo=UTC)), HashingEmbedder())
    clustered = [t for t in result.themes if t.key.startswith("terms:")]
    assert clustered, [t.key for t in result.themes]
    labelled = " ".join(t.label for t in clustered)
    assert "samples" in labelled or "webinar" in labelled


def test_unrecognised_names_never_become_terms() -> None:
    docs = {"a": ["the rep Quillon never called back", "rep Quillon never called back again",
                  "why has Quillon never called back"] * 2,
            "b": ["Cardiovex samples arrived late", "samples of Cardiovex late again"] * 2}
    terms = class_terms(docs)
    assert not any("quillon" in t for ts in terms.values() for t in ts)
    assert any("cardiovex" in t for t in terms["b"])  # product names stay


def test_nothing_to_theme() -> None:
    result = compute_themes([], HashingEmbedder())
    assert result.themes == [] and result.comments == 0


def _conversation(session: Session, now: datetime) -> Conversation:
    conv = Conversation(channel="webchat", created_at=now)
    session.add(conv)
    session.flush()
    return conv


def _store(session: Session, start: datetime) -> None:
    conv = _conversation(session, start)
    for item in _items(start):
        if item.kind == "comment":
            session.add(FeedbackComment(conversation_id=conv.id, subject=f"webchat:{conv.id}", text=item.text,
                                        category="other", created_at=item.at))
        else:
            session.add(AnswerRating(conversation_id=conv.id, subject=f"webchat:{conv.id}", helpful=False,
                                     reason=item.reason, created_at=item.at))
    session.add(AnswerRating(conversation_id=conv.id, subject=f"webchat:{conv.id}", helpful=True,
                             created_at=start))
    session.flush()


def _unique_start() -> datetime:
    return datetime(2032, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(0, 20000) * 10)


def test_runs_are_stored_and_read_back_cut_to_the_window(session: Session) -> None:
    start = _unique_start()
    _store(session, start)
    until = start + timedelta(days=10)
    assert latest_themes(session, since=start, until=until) == []
    run, _ = run_themes(session, since=start, until=until, embedder=HashingEmbedder(), now=until)
    assert run.comments == len(COMMENTS) and run.ratings == 4
    views = latest_themes(session, since=start, until=until)
    assert {v.key for v in views} >= set(FIRST_CLASS_KEYS)
    assert sum(v.count for v in views) == len(COMMENTS) + 4
    for view in views:
        assert len(view.examples) <= 3
        assert all(isinstance(d, date) for d, _ in view.trend)
    assert not any(c in json.dumps([v.examples for v in views]) for c in CANARIES)
    # a narrower window reads the same run, counting only its days
    day_two = latest_themes(session, since=start + timedelta(days=1), until=start + timedelta(days=2))
    assert 0 < sum(v.count for v in day_two) < sum(v.count for v in views)
    assert all(d == (start + timedelta(days=1)).date() for v in day_two for d, _ in v.trend)
    # the newest run wins
    later, _ = run_themes(session, since=start, until=until, embedder=HashingEmbedder(), now=until + timedelta(1))
    assert session.get(FeedbackThemeRun, later.id) is not None
    assert {v.key for v in latest_themes(session, since=start, until=until)} == {v.key for v in views}


def test_run_rejects_an_empty_window(session: Session) -> None:
    now = _unique_start()
    with pytest.raises(ValueError, match="since must be before until"):
        run_themes(session, since=now, until=now, embedder=HashingEmbedder(), now=now)


def test_weekly_trend() -> None:
    trend = [(date(2031, 3, 3), 2), (date(2031, 3, 5), 1), (date(2031, 3, 10), 4)]
    assert weekly(trend) == [(date(2031, 3, 3), 3), (date(2031, 3, 10), 4)]


def test_cli_computes_stores_and_prints(engine: object, database_url: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from api.db import make_session_factory, unit_of_work

    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    start = _unique_start()
    with unit_of_work(make_session_factory(engine)) as s:  # type: ignore[arg-type]
        _store(s, start)
    code = cli_main(["feedback", "themes", "--since", start.date().isoformat(),
                     "--until", (start + timedelta(days=10)).date().isoformat(), "--embedder", "hashing", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["comments"] == len(COMMENTS) and out["ratings"] == 4
    assert {t["key"] for t in out["themes"]} >= set(FIRST_CLASS_KEYS)
    assert not any(c in json.dumps(out) for c in CANARIES)
    code = cli_main(["feedback", "themes", "--since", start.date().isoformat(),
                     "--until", (start + timedelta(days=10)).date().isoformat(), "--embedder", "hashing"])
    text = capsys.readouterr().out
    assert code == 0 and "Wants a human" in text and "Too many messages" in text


def test_cli_rejects_a_reversed_window(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["feedback", "themes", "--since", "2031-02-01", "--until", "2031-01-01",
                     "--embedder", "hashing"]) == 2
    assert "--since must be before --until" in capsys.readouterr().err


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_recovers_well_separated_groups(method: str) -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(16, dtype=np.float32)[:4] * 3
    vectors = np.vstack([c + rng.normal(0, 0.15, (30, 16)).astype(np.float32) for c in centres])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gold = [str(i // 30) for i in range(120)]
    nmi, ari = scores(gold, cluster(vectors, method))
    assert nmi > 0.8 and ari > 0.7


def test_large_inputs_fit_a_sample_and_assign_the_rest() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(8, dtype=np.float32)[:3] * 3
    vectors = np.vstack([c + rng.normal(0, 0.1, (400, 8)).astype(np.float32) for c in centres])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = cluster(vectors, "kmeans_silhouette", fit_sample=200)
    assert len(labels) == 1200
    assert scores([str(i // 400) for i in range(1200)], labels)[0] > 0.9
    assert (assign_nearest(vectors[:5], vectors, labels) == labels[:5]).all()


def test_k_grid_and_unknown_method() -> None:
    assert k_grid(500)[0] == 2 and k_grid(500)[-1] == 60 and k_grid(12) == [2, 3]
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster(np.eye(5, dtype=np.float32), "nope")
