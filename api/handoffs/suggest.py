"""Agent assist: the approved items that fit what the HCP said last, for the staff member who holds
the handoff to send verbatim (``service.send_content``) in one click.

The query is the HCP's own recent messages — never staff or bot text, and never a message the
staff member may not read (a rep does not get suggestions built from a medical or safety message
the console withholds from them). Ranking runs only over the items the bot's gate lets go to this
HCP today (``knowledge.gate.gate_reason`` for ``api.content.recipient_for``, the same pair the
bot's answer and ``content_search`` use): an item for another market or audience, one that needs
a verified HCP, a withdrawn or expired one is never ranked, so it can never be suggested. The
send itself is gated again by ``send_content`` and by the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation, Direction, Message, SenderType
from api.handoffs.errors import NotClaimed, NotHolder
from api.handoffs.models import Handoff, HandoffStatus
from api.safety import firewall
from api.staff.service import StaffIdentity

if TYPE_CHECKING:
    from knowledge.engine import KnowledgeBase

# A ranked item below this score is not shown: with the second-stage reranker the score is its
# P(right answer); an unrelated question then scores well under it. Chosen on the seeded dev
# conversations (benchmarks/data/assist_conversations_dev.jsonl), never on the blind set.
SUGGEST_FLOOR = 0.10
RECENT_MESSAGES = 3
# Each older message counts a little less, so the latest question leads when two disagree.
RECENCY_DECAY = 0.9
MAX_QUERY_CHARS = 500


@dataclass(frozen=True)
class Suggestion:
    content_id: str
    version: int
    title: str
    product: str
    kind: str
    approval_code: str
    excerpt: str
    score: float
    message_id: int  # the HCP message it answers best

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def recent_hcp_messages(session: Session, conv: Conversation, ident: StaffIdentity | None, *,
                        limit: int = RECENT_MESSAGES) -> list[Message]:
    """The HCP's last ``limit`` typed messages this staff member may read, newest first.

    Button presses (a payload such as ``/request_human``) are not questions and are skipped;
    ``ident=None`` reads as a role that sees medical content (the benchmark).
    """
    rows = list(session.scalars(
        select(Message).where(Message.conversation_id == conv.id, Message.direction == Direction.inbound,
                              Message.sender_type == SenderType.hcp)
        .order_by(Message.id.desc()).limit(limit * 4)))
    rows = firewall.settled(session, rows[::-1])  # oldest first: a message still being screened waits
    hidden: set[int] = set()
    if ident is not None and not firewall.sees_medical_content(ident):
        hidden = firewall.medical_ids(session, conv.id, rows)
    out = [m for m in rows if m.id not in hidden and not m.payload and len((m.body or "").strip()) >= 3]
    out.sort(key=lambda m: m.id, reverse=True)
    return out[:limit]


def suggestions(session: Session, kb: KnowledgeBase, conv: Conversation, ident: StaffIdentity | None, *,
                now: datetime, default_market: str, k: int = 3, floor: float = SUGGEST_FLOOR) -> list[Suggestion]:
    """Up to ``k`` approved items the gate lets go to this HCP today, best first, for the HCP's
    recent messages (each message ranked on its own; an item keeps its best, recency-weighted score)."""
    from api.content import recipient_for
    from knowledge.gate import gate_reason
    from knowledge.models import ContentVersion
    from knowledge.retrieval import IndexDoc

    messages = recent_hcp_messages(session, conv, ident)
    if not messages:
        return []
    current = list(session.scalars(select(ContentVersion).where(ContentVersion.is_current.is_(True))
                                   .order_by(ContentVersion.content_id)))
    recipient = recipient_for(session, conv, default_market)
    today = now.date()
    allowed = {(v.content_id, v.version): v for v in current if gate_reason(v, recipient, today) is None}
    if not allowed:
        return []
    kb.sync([IndexDoc(v.content_id, v.version, v.title, tuple(v.questions), v.body) for v in current])
    best: dict[tuple[str, int], tuple[float, int]] = {}
    queries = [(msg.body.strip()[:MAX_QUERY_CHARS], RECENCY_DECAY ** age, msg.id) for age, msg in enumerate(messages)]
    if len(messages) > 1:  # a follow-up ("is that ok with it?") often needs the message before it
        joined = " ".join(m.body.strip() for m in reversed(messages))[-MAX_QUERY_CHARS:]
        queries.append((joined, 1.0, messages[0].id))
    for query, weight, message_id in queries:
        result = kb.decide(query, set(allowed), k=max(k, 5))
        for cid, version, score in result.candidate_ids:
            key = (cid, version)
            if key not in allowed:  # the mask already excludes it; never trust a ranking with the gate
                continue
            weighted = float(score) * weight
            if weighted >= floor and weighted > best.get(key, (-1.0, 0))[0]:
                best[key] = (weighted, message_id)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    out = []
    for key, (score, message_id) in ranked:
        v = allowed[key]
        out.append(Suggestion(v.content_id, v.version, v.title, v.product, v.kind, v.approval_code,
                              v.body[:240], round(score, 4), message_id))
    return out


def suggestions_for_handoff(session: Session, kb: KnowledgeBase, handoff_id: str, ident: StaffIdentity, *,
                            now: datetime, default_market: str, k: int = 3) -> list[Suggestion]:
    """Suggestions for the staff member who holds the handoff. Reads only: the caller ranks in a
    read-only session (ranking takes a model call per message) and audits with ``record_shown``."""
    from api.handoffs.service import get_for_staff

    handoff = get_for_staff(session, handoff_id, ident)
    if handoff.status != HandoffStatus.claimed:
        raise NotClaimed(f"claim handoff {handoff.reference} first to see suggested replies")
    if handoff.claimed_by != ident.id:
        raise NotHolder("only the colleague who holds this conversation sees its suggested replies")
    conv = session.get(Conversation, handoff.conversation_id)
    assert conv is not None
    return suggestions(session, kb, conv, ident, now=now, default_market=default_market, k=k)


def record_shown(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime,
                 found: list[Suggestion]) -> None:
    """Audit what was suggested: ids, versions and scores (no text)."""
    handoff = session.get(Handoff, handoff_id)
    assert handoff is not None
    audit.record(session, action="handoff.suggestions_shown", subject_type="handoff", subject_id=handoff.id,
                 actor_type="staff", actor_id=ident.id,
                 data={"reference": handoff.reference, "conversation_id": handoff.conversation_id,
                       "items": [{"content_id": s.content_id, "version": s.version, "score": s.score}
                                 for s in found]}, at=now)
