"""Staff-typed free text (reasons, notes) is kept on its own row, never inside the audit chain.

The audit log is append-only and hash-chained, so it can never be rewritten by a GDPR erasure, and a
reason a person typed ("patient J. Smith called back…") may name someone. The text lives in
``staff_note``, where erasure sweeps it like every other text column; the audit event carries a
reference — the note's id and the SHA-256 of the text as written — which proves what was said
without holding it. ``resolve`` puts the text back for the consoles' history views.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.db import Base, UTCDateTime

NOTE_KEY = "note_ref"  # the audit data key: {"field": ..., "id": ..., "sha256": ...}


class StaffNote(Base):
    __tablename__ = "staff_note"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    field: Mapped[str] = mapped_column(String(40))  # what the text is: reason, note
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def keep(session: Session, text: str | None, *, subject_type: str, subject_id: str, field: str,
         author_id: str | None, at: datetime) -> dict[str, Any]:
    """Store ``text`` (if any) and return the audit data that refers to it: ``{}`` for no text."""
    text = (text or "").strip()
    if not text:
        return {field: None}
    note = StaffNote(subject_type=subject_type, subject_id=subject_id, field=field, text=text,
                     author_id=author_id, created_at=at)
    session.add(note)
    session.flush()
    return {NOTE_KEY: {"field": field, "id": note.id, "sha256": digest(text)}}


def resolve(session: Session, events_data: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Audit data dicts with each note reference replaced by its field and current text.

    An erased note shows its pseudonymised text; a note whose text no longer matches the hash
    recorded in the audit (changed by anything but erasure) is shown with ``note_altered``.
    """
    rows = [dict(d) for d in events_data]
    ids = [r[NOTE_KEY]["id"] for r in rows if isinstance(r.get(NOTE_KEY), dict)]
    texts = {n.id: n.text for n in session.scalars(select(StaffNote).where(StaffNote.id.in_(ids)))} if ids else {}
    for r in rows:
        ref = r.pop(NOTE_KEY, None)
        if not isinstance(ref, dict):
            continue
        text = texts.get(int(ref.get("id") or 0))
        r[str(ref.get("field", "note"))] = text
        if text is not None and digest(text) != ref.get("sha256"):
            r["note_altered"] = True
    return rows
