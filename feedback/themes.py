"""What HCPs are telling us: feedback comments and not-helpful votes grouped into themes.

The job (``run_themes``, CLI ``concierge feedback themes``):

1. Reads the window's comments (``feedback_comment``) and not-helpful votes (``answer_rating``
   with ``helpful = false``; their reason code — not relevant / incomplete / unclear / other —
   is the theme, there is no text to cluster).
2. Embeds each distinct comment once with the MiniLM embedder (knowledge/embedding.py).
3. Names the themes the business acts on consistently, before any clustering: "Wants a human",
   "Too many messages", "Content out of date", "Access problem". A comment belongs to one when
   a precise phrase rule matches, or when a logistic regression over the embeddings (trained on
   the seed phrases, "none" phrases and 60 labelled comments) gives the theme probability
   >= ``FIRST_CLASS_PROBABILITY`` (benchmarks/first_class_eval.py).
4. Clusters the remaining comments (feedback/clustering.py; the method the CLINC150 benchmark
   picked) and labels each cluster with its characteristic terms (class-based TF-IDF, as in
   BERTopic: a term's frequency in the cluster x log(1 + average words per cluster / its
   frequency overall)), computed on redacted text so no name ever becomes a label. Clusters
   smaller than ``MIN_THEME_SIZE`` go to "Other".
5. Per theme: count, per-day counts and sentiment (feedback/sentiment.py), up to ten example
   quotes nearest the theme's centre, redacted (feedback/redact.py) before they are stored.

``latest_themes(session, since=, until=)`` reads the newest stored run covering the window and
cuts its per-day figures to it: the CX dashboard never computes anything and never sees an
unredacted quote.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from feedback.clustering import DEFAULT_METHOD, Labels, cluster
from feedback.models import AnswerRating, FeedbackComment, FeedbackTheme, FeedbackThemeRun
from feedback.redact import product_words, redact
from feedback.sentiment import DATA_DIR, SentimentClassifier
from knowledge.embedding import Embedder, Vectors
from knowledge.gaps import typical_label

FIRST_CLASS_PROBABILITY = 0.5
FIRST_CLASS_C = 4.0
MIN_THEME_SIZE = 3
STORED_EXAMPLES = 10
SHOWN_EXAMPLES = 3
TERMS_PER_THEME = 6
NOT_HELPFUL_SENTIMENT = -0.6  # a not-helpful vote has no words to score; it is a negative judgement
EMBED_BATCH = 512


@dataclass(frozen=True)
class FirstClassTheme:
    key: str
    label: str
    rule: re.Pattern[str]
    seeds: tuple[str, ...]


FIRST_CLASS: tuple[FirstClassTheme, ...] = (
    FirstClassTheme(
        "wants_human", "Wants a human",
        re.compile(r"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|my\s+|someone\s+)?"
                   r"(?:real\s+|actual\s+|live\s+)?"
                   r"(?:person|human|someone|somebody|agent|rep|representative|colleague)\b"
                   r"|\b(?:real|actual|live)\s+(?:person|human|agent)\b|\bnot\s+(?:a|this)\s+(?:bot|machine|robot)\b"
                   r"|\bhuman\s+(?:being|agent|contact)\b|\bcall\s+me\s+(?:back\s+)?instead\b", re.IGNORECASE),
        ("I want to talk to a real person", "can I speak to a human please", "put me through to someone",
         "I'd rather speak with my rep than a chatbot", "connect me to an agent", "I need a person, not a bot",
         "please have someone call me", "I want a human to answer this", "can my account manager phone me",
         "I'd like a pharmacist from your company to contact me", "transfer me to a staff member",
         "no more automated answers, get me a real expert", "could someone from medical information ring me",
         "have the MSL contact me directly", "I prefer to discuss this with a person"),
    ),
    FirstClassTheme(
        "too_many_messages", "Too many messages",
        re.compile(r"\btoo\s+(?:many|much|often|frequent(?:ly)?)\b(?!\s+(?:information|detail|text|jargon))"
                   r"|\b(?:stop|quit)\s+(?:sending|messaging|texting|spamming|contacting|pinging)\b|\bspam\w*\b"
                   r"|\bkeep\s+(?:sending|messaging|texting|asking)\b|\bunsubscribe\b|\bless\s+(?:often|frequently)\b"
                   r"|\bfewer\s+(?:messages|reminders|surveys|texts)\b"
                   r"|\bso\s+many\s+(?:messages|reminders|surveys|texts|notifications)\b"
                   r"|\bevery\s+(?:single\s+)?day\b.*\b(?:messages?|reminders?|texts?)\b", re.IGNORECASE),
        ("you send me too many messages", "too many reminders every day", "stop messaging me so often",
         "less frequent messages please", "I get spammed by your surveys", "please reduce the number of messages",
         "I am receiving far too many notifications", "contact me less often", "one message a month is plenty",
         "I'm flooded with updates", "the same newsletter arrives several times a week", "opt me out of daily texts",
         "the constant surveys are excessive", "cut down on the reminders", "messages on weekends are too much"),
    ),
    FirstClassTheme(
        "content_out_of_date", "Content out of date",
        re.compile(r"\bout[\s-]of[\s-]date\b|\boutdated\b|\bobsolete\b|\bsuperseded\b"
                   r"|\bno\s+longer\s+(?:current|valid|accurate|correct)\b"
                   r"|\bold\s+(?:version|guideline|label|leaflet|data|smpc|document|information|trial|study)\b"
                   r"|\bnot\s+(?:the\s+)?(?:current|latest|newest)\s+(?:version|label|smpc|guideline)\b"
                   r"|\b(?:version|leaflet|document|label)\s+(?:was|has\s+been)\s+(?:withdrawn|replaced|updated)\b",
                   re.IGNORECASE),
        ("the information is out of date", "this document is outdated", "the label has changed since then",
         "you sent an old guideline", "that version was superseded", "not the current SmPC",
         "the dosing advice doesn't reflect the latest label update", "that leaflet is a previous edition",
         "there are newer studies than the ones you quote", "this has been replaced by a new version",
         "the guidance is stale", "please update this, the recommendation changed", "the references are years old",
         "you sent me expired guidance", "the answer predates the label change"),
    ),
    FirstClassTheme(
        "access_problem", "Access problem",
        re.compile(r"\b(?:can'?t|cannot|can\s+not|couldn'?t|could\s+not|unable\s+to|won'?t|doesn'?t|does\s+not)\s+"
                   r"(?:log\s?in|sign\s?in|access|open|load|download|get\s+in(?:to)?)\b|\baccess\s+denied\b"
                   r"|\blocked\s+out\b|\baccount\s+(?:is\s+)?locked\b"
                   r"|\b(?:log\s?in|login|password|portal|link|pdf|app|website)\s+(?:is\s+|are\s+)?"
                   r"(?:broken|dead|not\s+working|doesn'?t\s+work|does\s+not\s+work|fails|failed|expired)\b"
                   r"|\b(?:link|pdf|document|portal|website|app)\b[^.!?]{0,40}\b(?:is|are)\s+"
                   r"(?:broken|dead|down|not\s+working)\b"
                   r"|\bbroken\s+link\b|\berror\s+(?:message|code|\d+)\b"
                   r"|\brejects?\s+my\s+(?:password|credentials|login)\b",
                   re.IGNORECASE),
        ("I cannot log in to the portal", "the link does not open", "access denied when I open the document",
         "the password reset does not work", "the portal rejects my credentials", "the PDF won't download",
         "my password is not accepted", "the download button does nothing", "I get an error page when I click it",
         "verification keeps failing so I cannot see it", "the page won't load", "the attachment is blocked",
         "my account was deactivated", "the two-factor code never arrives", "I can't see the file you sent"),
    ),
)
FIRST_CLASS_KEYS = tuple(t.key for t in FIRST_CLASS)

# Feedback that is none of the first-class themes ("none" examples for the classifier).
NOT_FIRST_CLASS_SEEDS = (
    "thanks, the answer was clear and useful", "the answer was wrong", "the answer was incomplete",
    "the answer did not cover children", "the answer was too long", "the reply was unclear about dosing",
    "samples arrived late", "samples arrived damaged", "the rep was friendly and helpful",
    "the MSL visit was useful", "please send the congress slides", "I'd like more information about the new indication",
    "can you message me weekly with new studies", "switch my language to French", "send it by email instead",
    "how do I report a side effect", "is there a patient support programme", "the trial data looks convincing",
    "my patient asked about storage", "the old formulation worked better", "wrong product in the reply",
    "great webinar", "quick reply, much appreciated", "the bot did not understand my question",
    "I logged in fine today", "I liked the infographic", "the rep was very human and kind",
)
NONE = "none"

RATING_THEMES = {
    "not_relevant": ("answer_not_relevant", "Answer not relevant"),
    "incomplete": ("answer_incomplete", "Answer incomplete"),
    "unclear": ("answer_unclear", "Answer unclear"),
    "other": ("answer_not_helpful_other", "Answer not helpful (other reason)"),
    None: ("answer_not_helpful", "Answer not helpful (no reason given)"),
}
RATING_THEME_KEYS = frozenset(key for key, _ in RATING_THEMES.values())
OTHER_KEY = "other"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOP = _words("""
a about above after again against all also am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
few for from further get got had hadn't has hasn't have haven't having he her here hers herself him himself
his how i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most mustn't my myself
no nor not of off on once only or other ought our ours ourselves out over own please same shan't she should
shouldn't so some such than thank thanks that that's the their theirs them themselves then there there's
these they they'd they'll they're they've this those through to too under until up very was wasn't we we'd
we'll we're we've were weren't what what's when when's where where's which while who who's whom why why's
with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves still really one
would like need want get even much many every time hi hello dear team regards kind best cheers honestly
fyi pls plz thx ok okay
""")
_TERM = re.compile(r"[a-zà-ÿ][a-zà-ÿ0-9'\-]{2,}")
_PLACEHOLDER = re.compile(r"\[(?:phone|email|name|licence|dob)\]")


@dataclass(frozen=True)
class ThemeView:
    """A theme as the CX dashboard shows it. ``examples`` are already redacted."""

    key: str
    label: str
    terms: list[str]
    count: int
    trend: list[tuple[date, int]]
    examples: list[str]
    sentiment: float | None     # None for not-helpful votes: they carry no words to score
    first_class: bool = False
    drillable: bool = False     # the run kept which comments / ratings formed it


@dataclass(frozen=True)
class FeedbackItem:
    """One comment (``text``) or one not-helpful vote (``reason``, no text)."""

    kind: str  # comment | rating
    id: str
    at: datetime
    text: str = ""
    reason: str | None = None


@dataclass
class ComputedTheme:
    key: str
    label: str
    first_class: bool
    terms: list[str]
    count: int
    sentiment: float
    trend: list[list[Any]]
    examples: list[list[str]]
    members: list[str] = field(default_factory=list)   # "comment:<id>" / "rating:<id>"


@dataclass
class ThemeResult:
    themes: list[ComputedTheme]
    comments: int
    ratings: int
    method: str
    embedder: str
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- computing themes


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _embed_unique(embedder: Embedder, texts: Sequence[str]) -> tuple[Vectors, list[int]]:
    """Vectors of the distinct texts and, per input text, the row of its vector."""
    index: dict[str, int] = {}
    rows: list[int] = []
    for text in texts:
        rows.append(index.setdefault(_normalise(text), len(index)))
    unique = list(index)
    parts = [embedder.embed(unique[i:i + EMBED_BATCH]) for i in range(0, len(unique), EMBED_BATCH)]
    vectors = np.vstack(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)
    return vectors.astype(np.float32), rows


def first_class_training() -> tuple[list[str], list[str]]:
    """(texts, labels) the first-class classifier learns from: every seed phrase, the "none" seeds
    and the labelled comments of ``feedback/data/first_class_eval.jsonl`` ("none" = no theme)."""
    texts = [s for t in FIRST_CLASS for s in t.seeds] + list(NOT_FIRST_CLASS_SEEDS)
    labels = [t.key for t in FIRST_CLASS for _ in t.seeds] + [NONE] * len(NOT_FIRST_CLASS_SEEDS)
    for line in (DATA_DIR / "first_class_eval.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            texts.append(str(row["text"]))
            labels.append(str(row["theme"] or NONE))
    return texts, labels


def first_class_of(texts: Sequence[str], vectors: Vectors, embedder: Embedder,
                   threshold: float = FIRST_CLASS_PROBABILITY) -> list[str | None]:
    """The first-class theme key of each text, or None.

    A phrase rule decides first (several rules: the most probable of them). Otherwise a logistic
    regression over the embeddings, trained on ``first_class_training()``, names the theme when
    its probability is at least ``threshold`` and the theme is not "none".
    """
    from sklearn.linear_model import LogisticRegression

    train_texts, train_labels = first_class_training()
    model = LogisticRegression(C=FIRST_CLASS_C, max_iter=3000).fit(embedder.embed(train_texts), train_labels)
    classes = [str(c) for c in model.classes_]
    proba = model.predict_proba(vectors) if len(vectors) else np.zeros((0, len(classes)))
    out: list[str | None] = []
    for row, text in enumerate(texts):
        ruled = [t.key for t in FIRST_CLASS if t.rule.search(text)]
        if ruled:
            out.append(max(ruled, key=lambda key: proba[row][classes.index(key)]))
            continue
        best = int(np.argmax(proba[row]))
        out.append(classes[best] if classes[best] != NONE and proba[row][best] >= threshold else None)
    return out


def _tokens(text: str) -> list[str]:
    text = _PLACEHOLDER.sub(" ", text.lower())  # masked personal data is never a characteristic term
    return [t.strip("'-") for t in _TERM.findall(text) if t.strip("'-") not in _STOP]


def proper_nouns(docs: Sequence[str]) -> set[str]:
    """Lower-cased words written Capitalised inside sentences at least half the time (names the
    redactor did not recognise, places), product names excepted: never used as theme terms."""
    capitalised: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for doc in docs:
        for sentence in re.split(r"[.!?;:\n]+", doc):
            for word in sentence.split()[1:]:
                bare = word.strip("\"'()[],")
                if not bare or not bare[0].isalpha():
                    continue
                low = bare.lower()
                seen[low] += 1
                if bare[0].isupper() and bare[1:].islower():
                    capitalised[low] += 1
    products = product_words()
    return {w for w, n in capitalised.items() if n * 2 >= seen[w] and w not in products}


def class_terms(docs_by_class: dict[str, list[str]], top: int = TERMS_PER_THEME) -> dict[str, list[str]]:
    """Characteristic terms per class: class-based TF-IDF over unigrams and bigrams."""
    tf: dict[str, Counter[str]] = {}
    total: Counter[str] = Counter()
    excluded = proper_nouns([d for docs in docs_by_class.values() for d in docs])
    for cls, docs in docs_by_class.items():
        counts: Counter[str] = Counter()
        for doc in docs:
            toks = _tokens(doc)
            counts.update(t for t in toks if t not in excluded)
            counts.update(f"{a} {b}" for a, b in itertools.pairwise(toks) if a not in excluded and b not in excluded)
        tf[cls] = counts
        total.update(counts)
    if not tf:
        return {}
    avg_words = sum(sum(c.values()) for c in tf.values()) / len(tf)
    out: dict[str, list[str]] = {}
    for cls, counts in tf.items():
        size = sum(counts.values()) or 1
        weighted = {term: (n / size) * np.log(1 + avg_words / total[term]) for term, n in counts.items()
                    if n >= 2 or len(docs_by_class[cls]) < 4}
        ranked = sorted(weighted, key=lambda term: (-weighted[term], term))
        chosen: list[str] = []
        for term in ranked:
            # a bigram replaces its own words, a word already inside a chosen bigram is skipped
            if any(term in c.split() for c in chosen if " " in c):
                continue
            if " " in term:
                chosen = [c for c in chosen if c not in term.split()]
            chosen.append(term)
            if len(chosen) >= top:
                break
        out[cls] = chosen
    return out


def _label_from_terms(terms: list[str]) -> str:
    return " / ".join(terms[:3]) if terms else "(no common terms)"


def compute_themes(items: Sequence[FeedbackItem], embedder: Embedder, *, method: str = DEFAULT_METHOD,
                   sentiment: SentimentClassifier | None = None, seed: int = 0) -> ThemeResult:
    """Themes of ``items`` (no database): biggest first, first-class themes always named alike."""
    timings: dict[str, float] = {}
    comments = [i for i in items if i.kind == "comment" and i.text.strip()]
    ratings = [i for i in items if i.kind == "rating"]

    start = time.perf_counter()
    vectors_unique, rows = _embed_unique(embedder, [c.text for c in comments])
    timings["embed"] = time.perf_counter() - start

    start = time.perf_counter()
    unique_texts = [""] * len(vectors_unique)
    for comment, row in zip(comments, rows, strict=True):
        unique_texts[row] = comment.text
    redacted_unique = [redact(t) for t in unique_texts]
    timings["redact"] = time.perf_counter() - start

    start = time.perf_counter()
    scorer = sentiment or SentimentClassifier(embedder)
    sentiment_unique = scorer.hybrid(unique_texts, vectors_unique) if len(unique_texts) else []
    timings["sentiment"] = time.perf_counter() - start

    start = time.perf_counter()
    fc_unique = first_class_of(unique_texts, vectors_unique, embedder)
    timings["first_class"] = time.perf_counter() - start

    start = time.perf_counter()
    rest = np.array([r for r, key in enumerate(fc_unique) if key is None], dtype=np.int64)
    # cluster distinct texts, weighting nothing: a comment sent 500 times is one point, counted 500 times
    labels: Labels = cluster(vectors_unique[rest], method, seed=seed) if len(rest) else np.zeros(0, np.int64)
    timings["cluster"] = time.perf_counter() - start

    start = time.perf_counter()
    theme_of_unique: list[str] = [key or "" for key in fc_unique]
    counts_per_unique = Counter(rows)
    cluster_sizes: Counter[int] = Counter()
    for r, lab in zip(rest.tolist(), labels.tolist(), strict=True):
        cluster_sizes[lab] += counts_per_unique[r]
    for r, lab in zip(rest.tolist(), labels.tolist(), strict=True):
        small = lab < 0 or cluster_sizes[lab] < MIN_THEME_SIZE
        theme_of_unique[r] = OTHER_KEY if small else f"cluster:{lab}"

    docs: dict[str, list[str]] = defaultdict(list)
    for r, key in enumerate(theme_of_unique):
        docs[key].extend([redacted_unique[r]] * min(counts_per_unique[r], 3))
    terms = class_terms(docs)

    members: dict[str, list[int]] = defaultdict(list)  # theme -> comment indexes
    for idx, row in enumerate(rows):
        members[theme_of_unique[row]].append(idx)

    themes: list[ComputedTheme] = []
    fc_labels = {t.key: t.label for t in FIRST_CLASS}
    for key, idxs in members.items():
        unique_rows = sorted({rows[i] for i in idxs})
        vecs = vectors_unique[unique_rows]
        centre = vecs.mean(axis=0)
        order = np.argsort(-(vecs @ centre), kind="stable")
        examples: list[list[str]] = []
        seen: set[str] = set()
        latest_at: dict[int, datetime] = {}
        for i in idxs:
            latest_at[rows[i]] = max(latest_at.get(rows[i], comments[i].at), comments[i].at)
        for o in order.tolist():
            r = unique_rows[o]
            quote = redacted_unique[r]
            if _normalise(quote) in seen:
                continue
            seen.add(_normalise(quote))
            examples.append([latest_at[r].isoformat(), quote])
            if len(examples) >= STORED_EXAMPLES:
                break
        day_counts: dict[date, list[float]] = defaultdict(lambda: [0, 0.0])
        for i in idxs:
            cell = day_counts[comments[i].at.date()]
            cell[0] += 1
            cell[1] += sentiment_unique[rows[i]]
        theme_terms = terms.get(key, [])
        if key in fc_labels:
            label, first = fc_labels[key], True
        elif key == OTHER_KEY:
            label, first = "Other", False
        else:
            # the most typical comment (closest to the theme's centre, redacted) names the theme;
            # the characteristic terms stay beside it
            label = typical_label(examples[0][1]) if examples else _label_from_terms(theme_terms)
            first = False
            key = "terms:" + "-".join(t.replace(" ", "_") for t in theme_terms[:3])
        themes.append(ComputedTheme(
            key=key[:120], label=label[:200], first_class=first, terms=theme_terms, count=len(idxs),
            sentiment=round(float(np.mean([sentiment_unique[rows[i]] for i in idxs])), 4),
            trend=[[d.isoformat(), int(c[0]), round(c[1], 4)] for d, c in sorted(day_counts.items())],
            examples=examples, members=[f"comment:{comments[i].id}" for i in idxs]))

    by_reason: dict[str | None, list[FeedbackItem]] = defaultdict(list)
    for rating in ratings:
        by_reason[rating.reason if rating.reason in RATING_THEMES else "other"].append(rating)
    for reason, votes in by_reason.items():
        key, label = RATING_THEMES[reason]
        per_day: Counter[date] = Counter(v.at.date() for v in votes)
        themes.append(ComputedTheme(
            key=key, label=label, first_class=False, terms=[], count=len(votes), sentiment=NOT_HELPFUL_SENTIMENT,
            trend=[[d.isoformat(), n, round(n * NOT_HELPFUL_SENTIMENT, 4)] for d, n in sorted(per_day.items())],
            examples=[], members=[f"rating:{v.id}" for v in votes]))
    # keys must be unique within a run (two clusters can share their top terms)
    seen_keys: Counter[str] = Counter()
    for theme in themes:
        seen_keys[theme.key] += 1
        if seen_keys[theme.key] > 1:
            theme.key = f"{theme.key[:110]}#{seen_keys[theme.key]}"
    themes.sort(key=lambda t: (not t.first_class, t.key == OTHER_KEY, -t.count, t.key))
    timings["label"] = time.perf_counter() - start
    return ThemeResult(themes=themes, comments=len(comments), ratings=len(ratings), method=method,
                       embedder=getattr(embedder, "name", type(embedder).__name__), timings=timings)


# ---------------------------------------------------------------- runs in the database


def load_items(session: Session, *, since: datetime, until: datetime) -> list[FeedbackItem]:
    """Comments and not-helpful votes created in [since, until)."""
    items = [FeedbackItem("comment", cid, at, text=text) for cid, at, text in session.execute(
        select(FeedbackComment.id, FeedbackComment.created_at, FeedbackComment.text)
        .where(FeedbackComment.created_at >= since, FeedbackComment.created_at < until)
        .order_by(FeedbackComment.created_at, FeedbackComment.id))]
    items += [FeedbackItem("rating", rid, at, reason=reason) for rid, at, reason in session.execute(
        select(AnswerRating.id, AnswerRating.created_at, AnswerRating.reason)
        .where(AnswerRating.helpful.is_(False), AnswerRating.created_at >= since, AnswerRating.created_at < until)
        .order_by(AnswerRating.created_at, AnswerRating.id))]
    return items


def run_themes(session: Session, *, since: datetime, until: datetime, embedder: Embedder, now: datetime,
               method: str = DEFAULT_METHOD, actor_id: str | None = None) -> tuple[FeedbackThemeRun, ThemeResult]:
    """Compute the window's themes and store them as a new run (flushes, never commits)."""
    if since >= until:
        raise ValueError("since must be before until")
    started = time.perf_counter()
    result = compute_themes(load_items(session, since=since, until=until), embedder, method=method)
    run = FeedbackThemeRun(created_at=now, since=since, until=until, method=method, embedder=result.embedder,
                           comments=result.comments, ratings=result.ratings,
                           duration_ms=int((time.perf_counter() - started) * 1000))
    session.add(run)
    session.flush()
    session.add_all(FeedbackTheme(run_id=run.id, position=pos, key=t.key, label=t.label, first_class=t.first_class,
                                  terms=t.terms, count=t.count, sentiment=t.sentiment, trend=t.trend,
                                  examples=t.examples, members=t.members) for pos, t in enumerate(result.themes))
    session.flush()
    audit.record(session, action="feedback.themes_run", subject_type="feedback_theme_run", subject_id=run.id,
                 actor_type="staff" if actor_id else "system", actor_id=actor_id,
                 data={"since": since.isoformat(), "until": until.isoformat(), "method": method,
                       "comments": result.comments, "ratings": result.ratings, "themes": len(result.themes)},
                 at=now)
    return run, result


def _latest_run(session: Session, since: datetime, until: datetime) -> FeedbackThemeRun | None:
    covering = session.execute(
        select(FeedbackThemeRun).where(FeedbackThemeRun.since <= since, FeedbackThemeRun.until >= until)
        .order_by(FeedbackThemeRun.created_at.desc(), FeedbackThemeRun.id.desc()).limit(1)).scalar_one_or_none()
    if covering is not None:
        return covering
    return session.execute(
        select(FeedbackThemeRun).where(FeedbackThemeRun.since < until, FeedbackThemeRun.until > since)
        .order_by(FeedbackThemeRun.created_at.desc(), FeedbackThemeRun.id.desc()).limit(1)).scalar_one_or_none()


def latest_themes(session: Session, *, since: datetime, until: datetime) -> list[ThemeView]:
    """Themes of the newest run covering [since, until) (else the newest overlapping it), cut to the window.

    Counts, trend, sentiment and examples are restricted to the window's days; themes with no
    comment in it are left out. First-class themes come first, then by count.
    """
    run = _latest_run(session, since, until)
    if run is None:
        return []
    first_day, last_day = since.date(), (until - timedelta(microseconds=1)).date()
    views: list[ThemeView] = []
    for theme in session.scalars(select(FeedbackTheme).where(FeedbackTheme.run_id == run.id)
                                 .order_by(FeedbackTheme.position)):
        days = [(date.fromisoformat(d), int(n), float(s)) for d, n, s in theme.trend]
        days = [x for x in days if first_day <= x[0] <= last_day]
        count = sum(n for _, n, _ in days)
        if count == 0:
            continue
        examples = [text for at, text in theme.examples
                    if first_day <= datetime.fromisoformat(at).date() <= last_day][:SHOWN_EXAMPLES]
        views.append(ThemeView(key=theme.key, label=theme.label, terms=list(theme.terms), count=count,
                               trend=[(d, n) for d, n, _ in days], examples=examples,
                               sentiment=None if theme.key in RATING_THEME_KEYS
                               else round(sum(s for _, _, s in days) / count, 4),
                               first_class=theme.first_class, drillable=bool(theme.members)))
    views.sort(key=lambda v: (not v.first_class, v.key == OTHER_KEY, -v.count, v.key))
    return views


def weekly(trend: Sequence[tuple[date, int]]) -> list[tuple[date, int]]:
    """A per-day trend summed per ISO week (keyed by the week's Monday)."""
    weeks: Counter[date] = Counter()
    for day, n in trend:
        weeks[day - timedelta(days=day.weekday())] += n
    return sorted(weeks.items())


def theme_conversations(session: Session, *, since: datetime, until: datetime, key: str) -> set[str] | None:
    """Conversation ids behind theme ``key`` of the run the dashboard shows for [since, until); None when
    that run has no such theme or did not keep its members."""
    run = _latest_run(session, since, until)
    if run is None:
        return None
    theme = session.execute(select(FeedbackTheme).where(FeedbackTheme.run_id == run.id, FeedbackTheme.key == key)
                            ).scalars().first()
    if theme is None or not theme.members:
        return None
    comments = [m.split(":", 1)[1] for m in theme.members if m.startswith("comment:")]
    ratings = [m.split(":", 1)[1] for m in theme.members if m.startswith("rating:")]
    found: set[str] = set()
    for chunk in range(0, len(comments), 500):
        found |= set(session.execute(select(FeedbackComment.conversation_id).where(
            FeedbackComment.id.in_(comments[chunk:chunk + 500]))).scalars())
    for chunk in range(0, len(ratings), 500):
        found |= set(session.execute(select(AnswerRating.conversation_id).where(
            AnswerRating.id.in_(ratings[chunk:chunk + 500]))).scalars())
    return {c for c in found if c}
