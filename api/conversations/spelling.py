"""Product and generic names as HCPs type them: misspellings corrected by edit distance.

"cardiovx", "velostatine", "respizn", "ferlaglutid" are read as the names in
``knowledge/content/products.yaml`` (display name, generic name, aliases) before the message goes
to Rasa, so that the NLU, the product entity and the library search all see the real name. The
message itself is stored as the HCP wrote it; only the text handed to Rasa is corrected.

A token is corrected when it is within a Damerau–Levenshtein distance of 1 of a name (2 for names
of 8 letters or more), starts with the same letter and is at least 5 letters long; ordinary words
that happen to be that close to a name (``glucose``) are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from api.safety.products import edit_distance as distance
from api.safety.products import load_catalogue, products_path_default

MIN_LENGTH = 5
# English and clinical words within reach of a product name that must stay what they are.
KEEP = frozenset({"glucose", "glucagon", "cardio", "cardiac", "respire", "respiration"})
_TOKEN = re.compile(r"[A-Za-z][A-Za-z\-]*[A-Za-z]")


class ProductSpelling:
    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(sorted({n.lower() for n in names if n}))
        self._plain = frozenset(n.replace("-", "") for n in self.names)

    def match(self, token: str) -> str | None:
        """The product name ``token`` is a misspelling of, if any (None for an exact name)."""
        low = token.lower()
        if len(low) < MIN_LENGTH or low in KEEP or low.replace("-", "") in self._plain:
            return None
        best: tuple[int, str] | None = None
        for name in self.names:
            if "-" in name or name[0] != low[0]:
                continue
            limit = 2 if len(name) >= 8 else 1
            d = distance(low, name, limit)
            if d <= limit and (best is None or d < best[0]):
                best = (d, name)
        return best[1] if best else None

    def correct(self, text: str) -> str:
        """``text`` with every misspelt product name replaced by the name (other text untouched)."""
        def fix(m: re.Match[str]) -> str:
            word = m.group(0)
            stem, suffix = (word[:-1], "s") if word.lower().endswith("s") and len(word) > MIN_LENGTH else (word, "")
            name = self.match(word) or (self.match(stem) if suffix else None)
            return name if name is not None and name != word.lower() else word
        return _TOKEN.sub(fix, text)


@lru_cache(maxsize=4)
def for_catalogue(path: Path | None = None) -> ProductSpelling:
    catalogue = load_catalogue(path or products_path_default())
    return ProductSpelling(name for product in catalogue.products for name in product.names)


def correct(text: str) -> str:
    """Misspelt product names in ``text`` corrected against the product catalogue."""
    return for_catalogue().correct(text)
