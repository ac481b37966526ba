"""Sentiment of one feedback comment, a score in [-1, 1].

A small lexicon scorer tuned for what HCPs write about a medical-information service, not a
general-purpose model: "out of date", "never called back", "can't log in", "too many
messages" are negative here; "clear", "quick", "saved me a call" positive. Rules, in the
spirit of VADER (Hutto & Gilbert 2014):

- phrases are matched before single words ("waste of time", "no complaints");
- a negator ("not", "n't", "never", "no", "without", "hardly") within three words before a
  sentiment word flips it, damped: "not helpful" is clearly negative, "not bad" mildly positive;
- intensifiers ("very", "really", "so", "extremely", "at all") scale the next word;
- after "but"/"although"/"however" the clause counts more than the clause before it;
- the sum is squashed with ``s / sqrt(s² + 15)`` into (-1, 1).

No labelled HCP-feedback set exists in ../shared/eval (psytar labels adverse events and
effectiveness of drugs, not satisfaction with a service). The lexicon covers what it knows and
says "neutral" about the rest, which is where it fails on new phrasing ("sorted it out for me,
grateful", "the portal rejects my credentials"). ``SentimentClassifier`` therefore adds a
logistic regression over the MiniLM sentence embeddings (the vectors the theme job computes
anyway), trained on the 130 labelled sentences in ``feedback/data/sentiment_{dev,test}.jsonl``;
``hybrid`` keeps the lexicon's score when it has an opinion and asks the classifier otherwise.
``benchmarks/sentiment_eval.py`` measures all three on ``sentiment_holdout.jsonl``, which was
written after the lexicon was frozen and is never trained on.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.embedding import Embedder, Vectors

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN_FILES = ("sentiment_dev.jsonl", "sentiment_test.jsonl")

POSITIVE_THRESHOLD = 0.25
NEGATIVE_THRESHOLD = -0.25

# Multi-word expressions first (regex over lower-cased text), with their valence.
_PHRASES: tuple[tuple[str, float], ...] = (
    (r"\bout of date\b|\bout-of-date\b|\bno longer (?:valid|current|accurate)\b|\bsuperseded\b", -2.5),
    (r"\bwaste of (?:my )?time\b", -3.0),
    (r"\bno complaints?\b|\bno problems?\b|\bno issues?\b", 2.0),
    (r"\bcould(?:n't| not) have asked for (?:a )?better\b", 3.0),
    (r"\b(?:never|not) (?:arrived|came|showed(?: up)?|turned up|called(?: back)?|answered|replied|got back)\b"
     r"|\bnever came\b|\bnobody (?:called|answered|replied|got back)\b|\bno one (?:called|answered|replied)\b", -2.5),
    (r"\bstill waiting\b|\bwaited (?:\w+ ){0,2}(?:days|weeks|hours)\b|\bkeep (?:waiting|chasing)\b", -2.0),
    (r"\b(?:can't|cannot|can not|couldn't|could not|unable to) (?:log ?in|sign ?in|access|open|get in|download)\b"
     r"|\baccess denied\b|\blocked out\b|\blogin (?:doesn't|does not|didn't|won't) work\b", -2.5),
    (r"\b(?:stop|quit) (?:sending|messaging|texting|contacting|spamming)\b|\bkeep (?:sending|messaging|asking)\b"
     r"|\btoo (?:many|much|often)\b|\bso many (?:messages|reminders|surveys)\b|\bunsubscribe\b", -2.0),
    (r"\b(?:talk|speak|chat) (?:to|with) (?:a )?(?:real |actual )?(?:person|human|someone)\b"
     r"|\bnot a (?:machine|bot|robot)\b", -1.5),
    (r"\bmissed the point\b|\bmiss(?:es)? the point\b|\bnot what i asked\b|\bdid(?:n't| not) answer\b", -2.5),
    (r"\bfed up\b|\bsick of\b|\bhad enough\b", -2.5),
    (r"\bsaved me\b|\bmuch appreciated\b|\bkeep it up\b|\bwell done\b|\bspot on\b|\bstraight away\b"
     r"|\bright away\b|\bon time\b|\bin seconds\b|\bto the point\b", 2.0),
    (r"\bthank you\b|\bthanks a lot\b|\bmany thanks\b", 1.2),
    (r"\bhard to (?:read|find|follow|understand|use)\b|\bdifficult to (?:read|find|follow|understand|use)\b", -2.0),
    (r"\btoo (?:long|short|slow|late|vague|generic)\b", -2.0),
    (r"\bnothing special\b|\bso[- ]so\b", -0.5),
)

_WORDS: dict[str, float] = {
    # positive
    "helpful": 2.0, "useful": 2.0, "great": 3.0, "excellent": 3.0, "brilliant": 3.0, "perfect": 3.0,
    "wonderful": 3.0, "fantastic": 3.0, "amazing": 3.0, "good": 1.9, "nice": 1.8, "clear": 1.5,
    "concise": 1.2, "quick": 1.5, "fast": 1.5, "prompt": 1.5, "accurate": 1.8, "reliable": 1.8,
    "informative": 1.8, "thorough": 1.5, "easy": 1.5, "easier": 1.5, "handy": 1.5, "smooth": 1.5,
    "love": 3.0, "like": 1.2, "liked": 1.5, "appreciate": 2.0, "appreciated": 2.0, "thanks": 0.8, "thank": 0.8,
    "cheers": 0.8, "happy": 2.0, "pleased": 2.0, "glad": 2.0, "impressed": 2.5, "friendly": 2.0,
    "polite": 1.5, "knowledgeable": 2.0, "better": 1.5, "best": 2.0, "solved": 2.0, "resolved": 2.0,
    "works": 1.0, "worked": 1.0, "recommend": 2.0, "relevant": 1.2, "up-to-date": 1.5, "current": 0.3,
    "fine": 0.4, "ok": 0.3, "okay": 0.3, "well": 0.6, "satisfied": 2.0, "efficient": 1.8, "convenient": 1.8,
    # negative
    "useless": -3.0, "unhelpful": -2.5, "bad": -2.0, "poor": -2.0, "terrible": -3.0, "awful": -3.0,
    "horrible": -3.0, "worst": -3.0, "worse": -2.0, "wrong": -2.5, "incorrect": -2.5, "inaccurate": -2.5,
    "outdated": -2.5, "old": -1.2, "obsolete": -2.5, "irrelevant": -2.5, "incomplete": -2.0,
    "confusing": -2.0, "confused": -1.8, "unclear": -2.0, "vague": -1.5, "slow": -1.8, "late": -1.5,
    "delayed": -1.8, "waiting": -1.0, "waited": -1.2, "annoying": -2.5, "annoyed": -2.5, "irritating": -2.5,
    "frustrating": -2.5, "frustrated": -2.5, "disappointed": -2.5, "disappointing": -2.5, "unhappy": -2.5,
    "unacceptable": -3.0, "broken": -2.5, "dead": -2.0, "error": -1.8, "fails": -2.0, "failed": -2.0,
    "failing": -2.0, "crash": -2.0, "crashes": -2.0, "denied": -2.0, "spam": -2.5, "pointless": -2.5,
    "contradicts": -2.0, "contradictory": -2.0, "misleading": -2.5, "cancelled": -1.5, "canceled": -1.5,
    "repeat": -1.0, "complaint": -1.5, "problem": -1.5, "problems": -1.5, "issue": -1.2, "issues": -1.2,
    "missing": -1.5, "lost": -1.5, "rude": -3.0, "ignored": -2.5, "hate": -3.0, "stop": -1.0,
    "generic": -1.0, "long-winded": -1.8, "lacking": -1.5, "missed": -1.5, "never": -0.5,
}

_NEGATORS = frozenset({"not", "no", "never", "without", "hardly", "barely", "nobody", "nothing", "neither", "nor",
                       "cannot", "cant", "dont", "doesnt", "didnt", "isnt", "wasnt", "arent", "werent", "wont",
                       "wouldnt", "couldnt", "shouldnt", "havent", "hasnt"})
_INTENSIFIERS = {"very": 1.4, "really": 1.4, "so": 1.3, "extremely": 1.6, "incredibly": 1.6, "super": 1.4,
                 "quite": 1.1, "totally": 1.4, "completely": 1.4, "absolutely": 1.5, "highly": 1.4, "much": 1.2,
                 "too": 1.3, "bit": 0.7, "slightly": 0.6, "somewhat": 0.7, "fairly": 0.9, "partly": 0.6}
_CONTRAST = frozenset({"but", "however", "although", "though", "yet"})
_TOKEN = re.compile(r"[a-z][a-z'\-]*|\d+|[!?]")
_COMPILED_PHRASES = tuple((re.compile(p), v) for p, v in _PHRASES)


def _squash(total: float, alpha: float = 15.0) -> float:
    return total / math.sqrt(total * total + alpha)


def _clause_score(clause: str) -> float:
    text = " " + clause + " "
    total = 0.0
    for pattern, valence in _COMPILED_PHRASES:
        for m in pattern.finditer(text):
            total += valence
            text = text[:m.start()] + " " * (m.end() - m.start()) + text[m.end():]
    tokens = [t.replace("'", "").replace("’", "") for t in _TOKEN.findall(text)]
    for i, tok in enumerate(tokens):
        word_valence = _WORDS.get(tok)
        if word_valence is None:
            continue
        valence = word_valence
        window = tokens[max(0, i - 3):i]
        scale = 1.0
        if window and window[-1] in _INTENSIFIERS:
            scale *= _INTENSIFIERS[window[-1]]
        negated = any(w in _NEGATORS for w in window) and tok != "never"
        if negated:
            # "not helpful" is clearly negative; "not bad" only mildly positive
            valence = -valence * (0.9 if valence > 0 else 0.5)
        if i + 2 < len(tokens) + 1 and tokens[i + 1:i + 3] == ["at", "all"]:
            scale *= 1.4
        total += valence * scale
    if "!" in tokens and total:
        total *= 1.15
    return total


def score(text: str) -> float:
    """Sentiment of ``text`` in [-1, 1]: below -0.25 negative, above 0.25 positive."""
    low = " ".join(text.lower().replace("’", "'").split())
    if not low:
        return 0.0
    parts = re.split(r"\b(?:but|however|although|though|yet)\b", low)
    if len(parts) == 1:
        return round(_squash(_clause_score(low)), 4)
    total = 0.0
    for i, part in enumerate(parts):
        weight = 0.5 if i < len(parts) - 1 else 1.5
        total += weight * _clause_score(part)
    return round(_squash(total), 4)


def label(value: float) -> str:
    """negative | neutral | positive for a score."""
    if value <= NEGATIVE_THRESHOLD:
        return "negative"
    if value >= POSITIVE_THRESHOLD:
        return "positive"
    return "neutral"


def load_labelled(name: str) -> list[tuple[str, str]]:
    """(text, label) rows of one labelled file in ``feedback/data``."""
    rows = []
    for line in (DATA_DIR / name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append((str(row["text"]), str(row["label"])))
    return rows


class SentimentClassifier:
    """Logistic regression on sentence embeddings; its score is P(positive) - P(negative)."""

    def __init__(self, embedder: Embedder, *, c: float = 1.0) -> None:
        self.embedder = embedder
        self._c = c
        self._model: Any = None

    def fit(self, rows: Sequence[tuple[str, str]] | None = None) -> SentimentClassifier:
        from sklearn.linear_model import LogisticRegression

        if rows is None:
            rows = [r for name in TRAIN_FILES for r in load_labelled(name)]
        vectors = self.embedder.embed([t for t, _ in rows])
        self._model = LogisticRegression(C=self._c, max_iter=2000).fit(vectors, [lab for _, lab in rows])
        return self

    def scores(self, vectors: Vectors) -> list[float]:
        if self._model is None:
            self.fit()
        if len(vectors) == 0:
            return []
        proba = self._model.predict_proba(vectors)
        classes = list(self._model.classes_)
        diff = proba[:, classes.index("positive")] - proba[:, classes.index("negative")]
        return [round(float(v), 4) for v in np.clip(diff, -1.0, 1.0)]

    def hybrid(self, texts: Sequence[str], vectors: Vectors) -> list[float]:
        """The lexicon's score where it is not neutral, else the classifier's."""
        lexical = [score(t) for t in texts]
        undecided = [i for i, v in enumerate(lexical) if label(v) == "neutral"]
        if undecided:
            learned = self.scores(vectors[undecided])
            for i, v in zip(undecided, learned, strict=True):
                lexical[i] = v
        return lexical
