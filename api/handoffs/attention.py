"""What an inbox row needs beyond the handoff itself, so a rep notices and triages it: the last
message (as this staff member may read it), how long the HCP has been waiting, whether the HCP has
opted out (STOP), and the small count the console's nav badge polls.

Previews obey the transcript's withholding rule (``api.safety.firewall``): a message the staff
stream withholds from this viewer is a placeholder here too, and a message the screen has not
finished yet is not previewed at all. Medical viewers (MSLs, medical reviewers) are not shown medical
text in a preview either: reading it means opening the handoff, where the view is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation, Direction, Message, SenderType
from api.handoffs.models import Handoff, HandoffStatus
from api.handoffs.service import _visible_clause
from api.hcps.models import Hcp
from api.safety import firewall
from api.safety.service import is_conversation_opted_out
from api.staff.service import StaffIdentity

PREVIEW_CHARS = 140
# Enough recent messages to find the last one a viewer may read behind a few withheld or unsettled ones.
PREVIEW_WINDOW = 12
MEDICAL_PREVIEW = "a medical or safety message; open the handoff to read it"
SPEAKERS: dict[str, str] = {SenderType.hcp: "HCP", SenderType.bot: "Assistant", SenderType.staff: "Staff",
            SenderType.system: "System"}
RECENT_IDS = 20


@dataclass(frozen=True)
class RowFacts:
    preview: str | None
    preview_from: str | None
    preview_withheld: bool
    waiting_since: datetime | None
    waiting_seconds: int | None
    opted_out: bool


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1].rstrip() + "…"


def _recent(session: Session, conv_ids: list[str]) -> dict[str, list[Message]]:
    """The last PREVIEW_WINDOW messages of each conversation, oldest first, in one query."""
    rank = func.row_number().over(partition_by=Message.conversation_id, order_by=Message.id.desc()).label("rank")
    ranked = select(Message.id, rank).where(Message.conversation_id.in_(conv_ids)).subquery()
    rows = session.execute(select(Message).join(ranked, ranked.c.id == Message.id)
                           .where(ranked.c.rank <= PREVIEW_WINDOW).order_by(Message.id)).scalars().all()
    out: dict[str, list[Message]] = {c: [] for c in conv_ids}
    for m in rows:
        out[m.conversation_id].append(m)
    return out


def _waiting_since(h: Handoff, messages: Sequence[Message]) -> datetime | None:
    """Queued: since the handoff was opened. Held: since the HCP's oldest message no person has
    answered yet (None when a person spoke last)."""
    if h.status == HandoffStatus.queued:
        return h.created_at
    if h.status != HandoffStatus.claimed:
        return None
    since: datetime | None = None
    for m in messages:
        if m.direction == Direction.outbound and m.sender_type == SenderType.staff:
            since = None
        elif m.direction == Direction.inbound and since is None:
            since = m.created_at
    return since


def row_facts_many(session: Session, rows: Sequence[tuple[Handoff, Conversation]], ident: StaffIdentity,
                   now: datetime) -> dict[str, RowFacts]:
    """Each handoff's row facts, by handoff id (a queue's worth in a handful of queries)."""
    if not rows:
        return {}
    recent = _recent(session, sorted({conv.id for _h, conv in rows}))
    shown = {conv_id: firewall.settled(session, messages) for conv_id, messages in recent.items()}
    medical = firewall.medical_ids_many(session, shown)
    medical_viewer = firewall.sees_medical_content(ident)
    out: dict[str, RowFacts] = {}
    for h, conv in rows:
        preview = preview_from = None
        withheld = False
        for m in reversed(shown[conv.id]):
            if not m.body.strip() and m.id not in medical:
                continue
            preview_from = SPEAKERS.get(m.sender_type, m.sender_type)
            if m.id in medical:
                withheld = True
                preview = MEDICAL_PREVIEW if medical_viewer else firewall.WITHHELD_NOTE
            else:
                preview = _clip(m.body)
            break
        since = _waiting_since(h, shown[conv.id])
        out[h.id] = RowFacts(preview=preview, preview_from=preview_from, preview_withheld=withheld,
                             waiting_since=since,
                             waiting_seconds=max(0, int((now - since).total_seconds())) if since else None,
                             opted_out=is_conversation_opted_out(session, conv, "service"))
    return out


def row_facts(session: Session, h: Handoff, conv: Conversation, ident: StaffIdentity, now: datetime) -> RowFacts:
    return row_facts_many(session, [(h, conv)], ident, now)[h.id]


@dataclass(frozen=True)
class Attention:
    queued: int
    mine: int
    recent: list[tuple[str, str, str]]  # (id, reference, target) of the newest queued handoffs


def attention(session: Session, ident: StaffIdentity) -> Attention:
    """The nav badge's numbers: handoffs waiting that this staff member may take, and the ones they hold."""
    visible = (select(Handoff.id, Handoff.reference, Handoff.target)
               .outerjoin(Hcp, Hcp.id == Handoff.hcp_id)
               .where(Handoff.status == HandoffStatus.queued, _visible_clause(ident)))
    queued = session.execute(select(func.count()).select_from(visible.subquery())).scalar_one()
    recent = session.execute(visible.order_by(Handoff.created_at.desc(), Handoff.id.desc())
                             .limit(RECENT_IDS)).all()
    mine = session.execute(select(func.count()).select_from(Handoff).where(
        Handoff.status == HandoffStatus.claimed, Handoff.claimed_by == ident.id)).scalar_one()
    return Attention(queued=int(queued), mine=int(mine), recent=[(r[0], r[1], str(r[2])) for r in recent])
