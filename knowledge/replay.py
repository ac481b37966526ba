"""Library-change impact: replay recent questions against a NEW library before loading it.

``concierge knowledge replay --library NEW [--days 30]`` reads the ``answer`` rows of the last
``days`` days (the questions actually asked, with each recipient's market, audience and
verification) and decides each one against the new library file — gate, rank, second stage,
abstention, exactly as ``answer`` would — without touching the database's content. The report:
how many would be answered / escalated, and every question whose outcome changes (answered ↔
escalated, or answered with a different item).

A load only adds or supersedes the items in the file (an item it does not name stays as it is), so
the library replayed against is :func:`library_after_load`: the current versions with the file laid
over them, as :func:`knowledge.service.load_library` would leave it. The CLI and the content
console's upload page both call these two functions; ``limit`` bounds a replay to the most recent
questions (the report says how many were asked in the window and how many were replayed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from knowledge.engine import LibraryKnowledgeBase
from knowledge.gate import Recipient
from knowledge.library import Library, LibraryItem
from knowledge.models import Answer, ContentVersion


@dataclass(frozen=True)
class ReplayChange:
    query: str
    asked_at: str
    before: str          # "answer:<content_id>" | "escalate"
    after: str


@dataclass
class ReplayReport:
    questions: int = 0       # replayed
    answered: int = 0
    escalated: int = 0
    answered_before: int = 0
    changed: list[ReplayChange] = field(default_factory=list)
    asked: int = 0           # asked in the window; more than ``questions`` when the replay was capped

    @property
    def capped(self) -> bool:
        return self.asked > self.questions

    def as_dict(self) -> dict[str, object]:
        return {"questions": self.questions, "asked": self.asked, "capped": self.capped,
                "answered": self.answered, "escalated": self.escalated,
                "answered_before": self.answered_before, "changed_count": len(self.changed),
                "changed": [asdict(c) for c in self.changed]}


def _outcome(answered: bool, content_id: str | None) -> str:
    return f"answer:{content_id}" if answered and content_id else "escalate"


def library_after_load(session: Session, library: Library) -> Library:
    """The library the bot would answer from once ``library`` is loaded: every current version, each
    replaced by the file's version of the item when the loader would make that one current (a new
    item, or a higher version; an older version in the file is skipped, as the loader skips it)."""
    current = {v.content_id: v for v in session.scalars(
        select(ContentVersion).where(ContentVersion.is_current.is_(True)))}
    items = {cid: LibraryItem(
        id=v.content_id, version=v.version, title=v.title, product=v.product, kind=v.kind,
        audience=tuple(v.audience), markets=tuple(v.markets), status=v.status, approval_code=v.approval_code,
        approved_at=v.approved_at, expires_at=v.expires_at, questions=tuple(v.questions), body=v.body,
        source="loaded") for cid, v in current.items()}
    for item in library.items:
        if item.id not in current or item.version > current[item.id].version:
            items[item.id] = item
    return Library(sorted(items.values(), key=lambda i: i.id), library.products, library.path)


def replay(session: Session, lkb: LibraryKnowledgeBase, *, since: datetime, today: date,
           limit: int | None = None, until: datetime | None = None) -> ReplayReport:
    """Decide the questions asked from ``since`` to ``until`` (default: no end) against ``lkb`` (the new
    library); nothing is written. Callers pass ``until=now``: a row stamped later (a clock set ahead)
    is not one of "the last N days" and must not push real questions out of a capped replay.

    With ``limit``, only the ``limit`` most recent of them are decided (``asked`` still counts all).
    """
    window = select(Answer).where(Answer.created_at >= since)
    if until is not None:
        window = window.where(Answer.created_at <= until)
    report = ReplayReport(asked=int(session.scalar(select(func.count()).select_from(window.subquery())) or 0))
    if limit is None:
        rows = list(session.scalars(window.order_by(Answer.created_at, Answer.id)))
    else:
        rows = list(session.scalars(window.order_by(Answer.created_at.desc(), Answer.id.desc()).limit(limit)))
        rows.reverse()
    for row in rows:
        recipient = Recipient(row.market, row.audience, verified=bool(row.verified))
        d = lkb.decide(row.query, recipient, today)
        top = d.candidate_ids[0][0] if (d.answer and d.candidate_ids) else None
        before = _outcome(row.decision == "answer", row.content_id)
        after = _outcome(top is not None, top)
        report.questions += 1
        report.answered += top is not None
        report.escalated += top is None
        report.answered_before += before != "escalate"
        if before != after:
            report.changed.append(ReplayChange(row.query, row.created_at.isoformat(), before, after))
    return report
