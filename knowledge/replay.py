"""Library-change impact: replay recent questions against a NEW library before loading it.

``concierge knowledge replay --library NEW [--days 30]`` reads the ``answer`` rows of the last
``days`` days (the questions actually asked, with each recipient's market, audience and
verification) and decides each one against the new library file — gate, rank, second stage,
abstention, exactly as ``answer`` would — without touching the database's content. The report:
how many would be answered / escalated, and every question whose outcome changes (answered ↔
escalated, or answered with a different item).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from knowledge.engine import LibraryKnowledgeBase
from knowledge.gate import Recipient
from knowledge.models import Answer


@dataclass(frozen=True)
class ReplayChange:
    query: str
    asked_at: str
    before: str          # "answer:<content_id>" | "escalate"
    after: str


@dataclass
class ReplayReport:
    questions: int = 0
    answered: int = 0
    escalated: int = 0
    answered_before: int = 0
    changed: list[ReplayChange] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"questions": self.questions, "answered": self.answered, "escalated": self.escalated,
                "answered_before": self.answered_before, "changed_count": len(self.changed),
                "changed": [asdict(c) for c in self.changed]}


def _outcome(answered: bool, content_id: str | None) -> str:
    return f"answer:{content_id}" if answered and content_id else "escalate"


def replay(session: Session, lkb: LibraryKnowledgeBase, *, since: datetime, today: date) -> ReplayReport:
    """Decide every question asked since ``since`` against ``lkb`` (the new library); nothing is written."""
    rows = session.scalars(select(Answer).where(Answer.created_at >= since).order_by(Answer.created_at))
    report = ReplayReport()
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
