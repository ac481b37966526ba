"""Approved content a staff member can send into a handoff conversation: search the current library,
each item marked with whether the send-time gate lets it go to this HCP today."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation


@dataclass(frozen=True)
class ContentChoice:
    content_id: str
    version: int
    title: str
    product: str
    kind: str
    approval_code: str
    excerpt: str
    sendable: bool
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def search_content(session: Session, conv: Conversation, query: str, *, now: datetime, default_market: str,
                   limit: int = 20) -> list[ContentChoice]:
    """Current approved items whose title, questions or text contain every word of ``query``,
    each marked with whether the send-time gate lets it go to this HCP today."""
    from api.content import recipient_for
    from knowledge.gate import gate_reason
    from knowledge.library import Status
    from knowledge.models import ContentVersion

    words = [w for w in re.split(r"\s+", query.lower().strip()) if w]
    recipient = recipient_for(session, conv, default_market)
    found: list[ContentChoice] = []
    rows = session.execute(select(ContentVersion).where(ContentVersion.is_current.is_(True),
                                                        ContentVersion.status == Status.approved)
                           .order_by(ContentVersion.content_id)).scalars()
    for v in rows:
        haystack = " ".join([v.content_id, v.title, v.product, *v.questions, v.body]).lower()
        if not all(w in haystack for w in words):
            continue
        reason = gate_reason(v, recipient, now.date())
        found.append(ContentChoice(v.content_id, v.version, v.title, v.product, v.kind, v.approval_code,
                                   v.body[:240], reason is None, reason))
    found.sort(key=lambda c: (not c.sendable, c.content_id))
    return found[:limit]
