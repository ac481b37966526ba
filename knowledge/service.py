"""Approved-content service: load the library, answer (gate → rank → abstain), render at send time.

Services take a ``Session``, flush, and never commit. Heavy parts (model, faiss) live in
:mod:`knowledge.engine` and load lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.audit.service import record
from api.clock import utcnow
from api.errors import ContentGated, InvalidInput, NotFound
from knowledge.engine import KnowledgeBase, get_knowledge_base
from knowledge.gate import Recipient, gate_reason
from knowledge.library import LibraryInvalid, LibraryItem, Status, parse_library
from knowledge.models import Answer, ContentItem, ContentProduct, ContentVersion, Decision
from knowledge.retrieval import IndexDoc

__all__ = [
    "AnswerDecision", "ContentSummary", "KnowledgeBase", "LoadReport", "Recipient", "SendableContent",
    "answer_question", "current_docs", "get_knowledge_base", "list_items", "load_library",
    "render_for_send", "withdraw",
]


@dataclass(frozen=True)
class AnswerDecision:
    decision: str                 # "answer" | "escalate"
    answer_id: str | None         # id of the `answer` row written
    content_id: str | None
    version: int | None
    score: float
    candidates: list[tuple[str, float]]   # (content_id, score) best first, up to 5
    # escalated, but an item gated only because the recipient is not a verified HCP would have been
    # answered: the reply says such content exists for verified HCPs and offers verification (no id,
    # no text of the gated item is returned or logged as a candidate)
    needs_verification: bool = False


@dataclass(frozen=True)
class SendableContent:
    content_id: str
    version: int
    title: str
    product: str
    approval_code: str
    body: str
    safety_statement: str | None

    def text(self) -> str:
        """The body verbatim, a blank line and the safety statement (if any), then the reference."""
        out = self.body
        if self.safety_statement:
            out += "\n\n" + self.safety_statement
        return out + "\nRef: " + self.approval_code


@dataclass
class LoadReport:
    items: int = 0
    added: list[str] = field(default_factory=list)        # new items
    new_versions: list[str] = field(default_factory=list)  # "id@version" that became current
    unchanged: int = 0
    skipped_stale: list[str] = field(default_factory=list)  # file version older than the current one
    products: int = 0


@dataclass(frozen=True)
class ContentSummary:
    content_id: str
    current_version: int
    title: str
    product: str
    kind: str
    status: str
    approved_at: date
    expires_at: date
    markets: list[str]
    audience: list[str]
    versions: int


# -- loading ------------------------------------------------------------------------------------

def _version_from_item(item: LibraryItem, actor: str) -> ContentVersion:
    return ContentVersion(
        content_id=item.id, version=item.version, is_current=True, title=item.title, product=item.product,
        kind=item.kind, audience=list(item.audience), markets=list(item.markets), status=item.status,
        approval_code=item.approval_code, approved_at=item.approved_at, expires_at=item.expires_at,
        questions=list(item.questions), body=item.body, content_hash=item.content_hash(), loaded_by=actor,
    )


def load_library(session: Session, path: Path, *, actor: str = "system") -> LoadReport:
    """Validate the library at ``path`` and upsert it: new versions become current, history is kept.

    Nothing is written when the library is invalid or when an existing (id, version) pair
    arrives with different content (a changed item must carry a new version number).
    """
    library = parse_library(path)
    versions = {(v.content_id, v.version): v for v in session.scalars(
        select(ContentVersion).where(ContentVersion.content_id.in_([i.id for i in library.items])))}
    conflicts = [
        f"{i.source}: {i.id} version {i.version} is already loaded with different content; "
        "bump the version" for i in library.items
        if (i.id, i.version) in versions and versions[(i.id, i.version)].content_hash != i.content_hash()
    ]
    if conflicts:
        raise LibraryInvalid(conflicts)

    report = LoadReport(items=len(library.items))
    items = {c.id: c for c in session.scalars(
        select(ContentItem).where(ContentItem.id.in_([i.id for i in library.items])))}
    now = utcnow()
    for item in sorted(library.items, key=lambda i: i.id):
        existing = items.get(item.id)
        if (item.id, item.version) in versions:
            report.unchanged += 1
            continue
        if existing is not None and item.version < existing.current_version:
            report.skipped_stale.append(f"{item.id}@{item.version}")
            continue
        if existing is None:
            existing = ContentItem(id=item.id, current_version=item.version, product=item.product,
                                   created_at=now, updated_at=now)
            session.add(existing)
            report.added.append(item.id)
        else:
            for old in session.scalars(select(ContentVersion).where(
                    ContentVersion.content_id == item.id, ContentVersion.is_current.is_(True))):
                old.is_current = False
            session.flush()
            existing.current_version = item.version
            existing.product = item.product
            existing.updated_at = now
        session.add(_version_from_item(item, actor))
        report.new_versions.append(f"{item.id}@{item.version}")
        record(session, action="content.version_loaded", subject_type="content_item", subject_id=item.id,
               actor_type="staff" if actor != "system" else "system", actor_id=actor,
               data={"version": item.version, "status": item.status, "approval_code": item.approval_code})
    for key, product in library.products.items():
        row = session.get(ContentProduct, key)
        if row is None:
            session.add(ContentProduct(key=key, display_name=product.display_name,
                                       safety_statement=product.safety_statement, data=product.data))
        else:
            row.display_name = product.display_name
            row.safety_statement = product.safety_statement
            row.data = product.data
            row.updated_at = now
        report.products += 1
    session.flush()
    return report


def withdraw(session: Session, content_id: str, *, actor: str, reason: str) -> None:
    """Withdraw the current version: from this flush on, it is neither answered nor sent."""
    version = session.scalars(select(ContentVersion).where(
        ContentVersion.content_id == content_id, ContentVersion.is_current.is_(True))).one_or_none()
    if version is None:
        raise NotFound(f"content item {content_id} not found")
    if not reason.strip():
        raise InvalidInput("a withdrawal needs a reason")
    version.status = Status.withdrawn
    version.withdrawn_at = utcnow()
    version.withdrawn_reason = reason
    record(session, action="content.withdrawn", subject_type="content_item", subject_id=content_id,
           actor_type="staff", actor_id=actor, data={"version": version.version, "reason": reason})
    session.flush()


def list_items(session: Session) -> list[ContentSummary]:
    counts: dict[str, int] = {cid: int(n) for cid, n in session.execute(
        select(ContentVersion.content_id, func.count()).group_by(ContentVersion.content_id))}
    rows = session.scalars(select(ContentVersion).where(ContentVersion.is_current.is_(True))
                           .order_by(ContentVersion.content_id))
    return [ContentSummary(v.content_id, v.version, v.title, v.product, v.kind, v.status, v.approved_at,
                           v.expires_at, list(v.markets), list(v.audience), int(counts.get(v.content_id, 1)))
            for v in rows]


def current_docs(session: Session) -> list[IndexDoc]:
    """What the index holds: every current version (gating happens per query, not in the index)."""
    rows = session.scalars(select(ContentVersion).where(ContentVersion.is_current.is_(True))
                           .order_by(ContentVersion.content_id))
    return [IndexDoc(v.content_id, v.version, v.title, tuple(v.questions), v.body) for v in rows]


# -- answering ----------------------------------------------------------------------------------

def answer_question(session: Session, kb: KnowledgeBase, query: str, recipient: Recipient, *, today: date,
                    conversation_id: str | None = None, message_id: int | None = None) -> AnswerDecision:
    """Gate (from the DB's current status), rank, abstain; log an ``answer`` row and an audit event."""
    current = list(session.scalars(select(ContentVersion).where(ContentVersion.is_current.is_(True))
                                   .order_by(ContentVersion.content_id)))
    kb.sync([IndexDoc(v.content_id, v.version, v.title, tuple(v.questions), v.body) for v in current])
    allowed = {(v.content_id, v.version) for v in current if gate_reason(v, recipient, today) is None}
    result = kb.decide(query, allowed)
    top = result.candidate_ids[0] if (result.answer and result.candidate_ids) else None
    decision = Decision.answer if top else Decision.escalate
    needs_verification = top is None and _verification_would_answer(kb, query, current, allowed, recipient, today)
    row = Answer(
        conversation_id=conversation_id, message_id=message_id, query=query, market=recipient.market,
        audience=recipient.audience, verified=recipient.verified, decision=decision,
        content_id=top[0] if top else None, content_version=top[1] if top else None,
        score=round(result.confidence, 6),
        candidates=[{"content_id": c, "version": v, "score": round(s, 6)} for c, v, s in result.candidate_ids],
        gated_count=len(current) - len(allowed),
    )
    session.add(row)
    session.flush()
    record(session, action=f"knowledge.{decision.value}", subject_type="answer", subject_id=row.id,
           data={"conversation_id": conversation_id, "message_id": message_id, "content_id": row.content_id,
                 "version": row.content_version, "score": row.score,
                 "candidates": [c["content_id"] for c in row.candidates],
                 **({"needs_verification": True} if needs_verification else {})})
    return AnswerDecision(
        decision=decision.value, answer_id=row.id, content_id=row.content_id, version=row.content_version,
        score=row.score, candidates=[(c, round(s, 6)) for c, _, s in result.candidate_ids[:5]],
        needs_verification=needs_verification,
    )


def _verification_would_answer(kb: KnowledgeBase, query: str, current: list[ContentVersion],
                               allowed: set[tuple[str, int]], recipient: Recipient, today: date) -> bool:
    """Would a verified HCP (same market) have been answered with an item this recipient may not see?

    Only for someone who is not yet a verified HCP and not a patient (a patient is never offered
    HCP verification). Ranks over the items a verified HCP may see; true only when the policy
    answers and the top item is one the gate withheld from this recipient.
    """
    if recipient.verified or recipient.audience == "patient":
        return False
    as_hcp = Recipient(recipient.market, "hcp", verified=True)
    hcp_allowed = {(v.content_id, v.version) for v in current if gate_reason(v, as_hcp, today) is None}
    if not hcp_allowed - allowed:
        return False
    result = kb.decide(query, hcp_allowed)
    if not (result.answer and result.candidate_ids):
        return False
    cid, version, _ = result.candidate_ids[0]
    return (cid, version) not in allowed


def render_for_send(session: Session, content_id: str, version: int, recipient: Recipient, *,
                    today: date) -> SendableContent:
    """The send-time gate: this exact version must be current and pass every gate today."""
    row = session.scalars(select(ContentVersion).where(
        ContentVersion.content_id == content_id, ContentVersion.version == version)
        .execution_options(populate_existing=True)).one_or_none()
    if row is None:
        raise ContentGated(f"{content_id}@{version}: no such content version", detail={"reason": "unknown"})
    if not row.is_current:
        raise ContentGated(f"{content_id}@{version}: superseded by a newer version",
                           detail={"reason": "superseded"})
    reason = gate_reason(row, recipient, today)
    if reason is not None:
        raise ContentGated(f"{content_id}@{version}: {reason}", detail={"reason": reason})
    product = session.get(ContentProduct, row.product)
    return SendableContent(
        content_id=row.content_id, version=row.version, title=row.title, product=row.product,
        approval_code=row.approval_code, body=row.body,
        safety_statement=product.safety_statement if product else None,
    )


def answers_since(session: Session, since: datetime) -> list[Answer]:
    return list(session.scalars(select(Answer).where(Answer.created_at >= since).order_by(Answer.created_at)))
