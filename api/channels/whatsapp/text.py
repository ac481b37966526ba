"""What a reply looks like on WhatsApp: numbered options instead of buttons, split to fit.

Twilio accepts at most 1,600 characters in one WhatsApp body. Longer replies go out as several
messages, cut at sentence boundaries (then at spaces, then hard) so no part exceeds the limit.
"""

from __future__ import annotations

import re
from typing import Any

WHATSAPP_BODY_LIMIT = 1600

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n{2,}")
_CHOICE = re.compile(r"^\s*(\d{1,2})\s*[.)]?\s*$")


def speaker_line(msg: Any) -> str:
    """A staff message on WhatsApp starts with who is speaking (the web chat shows it as a label)."""
    label = getattr(msg, "sender_label", None)
    return f"*{label}*\n" if label else ""


def numbered_options(buttons: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Quick-reply buttons → [{"n": 1, "title": ..., "payload": ...}, ...]."""
    return [{"n": i, "title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
            for i, b in enumerate(buttons or [], start=1) if b.get("title")]


def options_text(options: list[dict[str, Any]]) -> str:
    return "\n".join(f"Reply {o['n']} for {o['title']}" for o in options)


def with_options(body: str, options: list[dict[str, Any]]) -> str:
    if not options:
        return body
    return f"{body}\n\n{options_text(options)}" if body else options_text(options)


def chosen_option(text: str, options: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The option an HCP picked by replying with its number (or its exact title)."""
    if not options:
        return None
    m = _CHOICE.match(text)
    if m:
        n = int(m.group(1))
        return next((o for o in options if o["n"] == n), None)
    folded = text.strip().casefold()
    return next((o for o in options if o["title"].strip().casefold() == folded), None)


def _hard_pieces(chunk: str, limit: int) -> list[str]:
    """A sentence longer than the limit: cut at spaces, or mid-word as a last resort."""
    pieces: list[str] = []
    rest = chunk.strip()
    while len(rest) > limit:
        cut = rest.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def split_body(text: str, limit: int = WHATSAPP_BODY_LIMIT) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` characters, preferring sentence ends.

    The whitespace between sentences that stay in one part is kept (paragraphs stay paragraphs).
    """
    if len(text) <= limit:
        return [text]
    segments: list[tuple[str, str]] = []  # (separator before, sentence)
    start, sep = 0, ""
    for m in _SENTENCE_END.finditer(text):
        segments.append((sep, text[start:m.start()]))
        sep, start = m.group(0), m.end()
    segments.append((sep, text[start:]))
    parts: list[str] = []
    current = ""
    for sep, sentence in segments:
        if not sentence.strip():
            continue
        pieces = _hard_pieces(sentence, limit) if len(sentence) > limit else [sentence.strip()]
        for i, piece in enumerate(pieces):
            joiner = (sep if i == 0 else " ") if current else ""
            if len(current) + len(joiner) + len(piece) <= limit:
                current = f"{current}{joiner}{piece}"
            else:
                parts.append(current)
                current = piece
    if current:
        parts.append(current)
    return parts
