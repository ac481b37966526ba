"""A small hand-made CX dataset in a window of its own, with the KPIs worked out by hand.

Everything lies in three UTC days (``day0`` … ``day0 + 2``) of a window that holds no other rows
when the dataset is built, with products of its own, so the shared test database's other rows
never enter the window.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation
from api.handoffs.models import Handoff
from api.hcps.models import Hcp
from api.requests.models import ServiceRequest
from api.safety.models import MedicalInquiry
from feedback.models import AnswerRating, FeedbackComment, SurveyResponse
from knowledge.models import Answer, ContentItem

# Planted in free text (questions and comments): must never reach a page or JSON unmasked.
CANARY_PHONE = "+44 7700 900461"
CANARY_EMAIL = "canary.kpi@example.org"
CANARY_NAME = "Quillfeather-Canary"


@dataclass(frozen=True)
class Crafted:
    day0: datetime
    p1: str
    p2: str
    marker: str

    @property
    def since(self) -> datetime:
        return self.day0

    @property
    def until(self) -> datetime:
        return self.day0 + timedelta(days=3)


def _at(day0: datetime, day: int, hour: int, minute: int = 0) -> datetime:
    return day0 + timedelta(days=day, hours=hour, minutes=minute)


def _free_window(session: Session) -> datetime:
    """A random day0 (2003–2019: after the rollup test's empty 1979 and the empty 1990 window) whose
    neighbourhood holds no rows yet.

    Tests that commit this dataset leave it in the shared (persistent) test database, so a
    random window alone would sooner or later overlap an earlier run's dataset.
    """
    rnd = random.Random(uuid.uuid4().int)
    for _ in range(100):
        day0 = datetime.combine(date(2003, 1, 1) + timedelta(days=rnd.randrange(6000)), datetime.min.time(), UTC)
        lo, hi = day0 - timedelta(days=4), day0 + timedelta(days=7)
        busy = any(session.scalar(select(func.count()).select_from(m).where(col >= lo, col < hi))
                   for m, col in ((Conversation, Conversation.created_at), (Answer, Answer.created_at),
                                  (SurveyResponse, SurveyResponse.asked_at), (Handoff, Handoff.created_at)))
        if not busy:
            return day0
    raise RuntimeError("no free three-day window found in the test database")


def build(session: Session) -> Crafted:
    """Add the dataset (flush only; the caller commits or rolls back)."""
    day0 = _free_window(session)
    marker = uuid.uuid4().hex[:8]
    p1, p2 = f"kpi-{marker}-alpha", f"kpi-{marker}-beta"
    x1, x2 = f"KPI-{marker}-1", f"KPI-{marker}-2"
    session.add_all([ContentItem(id=x1, current_version=1, product=p1),
                     ContentItem(id=x2, current_version=1, product=p2)])

    hcp = Hcp(name=f"Dr Ada {CANARY_NAME}", specialty="cardiology", country="GB", created_at=day0)
    session.add(hcp)
    session.flush()

    def conv(channel: str, day: int, inbound: bool = True) -> Conversation:
        c = Conversation(channel=channel, created_at=_at(day0, day, 1), hcp_id=hcp.id,
                         address=f"whatsapp:{CANARY_PHONE}" if channel == "whatsapp" else None,
                         last_inbound_at=_at(day0, day, 1, 1) if inbound else None)
        session.add(c)
        session.flush()
        return c

    c1, c2 = conv("webchat", 0), conv("webchat", 0)
    c3, c4, c5 = conv("whatsapp", 1), conv("whatsapp", 1), conv("whatsapp", 2)
    conv("webchat", 2, inbound=False)                                    # never wrote: not counted
    c7 = Conversation(channel="webchat", created_at=day0 - timedelta(days=2), last_inbound_at=day0 - timedelta(days=2))
    session.add(c7)
    session.flush()

    def answer(c: Conversation, day: int, decision: str, content: str, query: str) -> Answer:
        a = Answer(conversation_id=c.id, created_at=_at(day0, day, 2), query=query, market="GB", audience="hcp",
                   decision=decision, content_id=content if decision == "answer" else None,
                   content_version=1 if decision == "answer" else None, score=0.5,
                   candidates=[{"content_id": content, "version": 1, "score": 0.5}])
        session.add(a)
        session.flush()
        return a

    a1 = answer(c1, 0, "answer", x1, "What is the recommended dose?")
    answer(c1, 0, "escalate", x2, f"Can the pen be stored in a hot car? call me {CANARY_PHONE}")
    a3 = answer(c2, 0, "answer", x1, "What is the starting dose in renal impairment?")
    answer(c3, 1, "escalate", x1, f"Is there an interaction with grapefruit juice? {CANARY_EMAIL}")
    a5 = answer(c4, 1, "answer", x2, "How should the pen be stored?")
    session.add(Answer(conversation_id=c7.id, created_at=day0 - timedelta(hours=1), query="outside the window",
                       market="GB", audience="hcp", decision="escalate", score=0.1, candidates=[]))

    def rating(c: Conversation, a: Answer | None, helpful: bool, day: int) -> None:
        session.add(AnswerRating(answer_id=a.id if a else None, conversation_id=c.id, subject=f"test:{marker}",
                                 helpful=helpful, created_at=_at(day0, day, 3)))

    rating(c1, a1, True, 0)
    rating(c2, a3, False, 0)
    rating(c4, a5, True, 1)
    rating(c3, None, False, 1)

    def handoff(c: Conversation, created: datetime, claimed: datetime | None) -> None:
        session.add(Handoff(reference=f"H-{uuid.uuid4().hex[:8]}", conversation_id=c.id, target="rep",
                            reason="hcp_request", summary="-", status="claimed" if claimed else "queued",
                            sla_due_at=created + timedelta(hours=4), claimed_at=claimed, created_at=created))

    handoff(c1, _at(day0, 0, 10), _at(day0, 0, 10, 5))                  # 300 s
    handoff(c3, _at(day0, 1, 9), _at(day0, 1, 9, 15))                   # 900 s
    handoff(c5, _at(day0, 2, 12), None)
    session.add(MedicalInquiry(reference=f"MI-{uuid.uuid4().hex[:12]}", text="off-label question", channel="webchat",
                               conversation_id=c2.id, created_at=_at(day0, 0, 4)))

    def request(c: Conversation, product: str, created: datetime, completed: datetime | None,
                due: datetime) -> ServiceRequest:
        r = ServiceRequest(reference=f"SR-{uuid.uuid4().hex[:12]}", kind="samples", team="rep",
                           status="resolved" if completed else "open", conversation_id=c.id, channel=c.channel,
                           product=product, details={}, created_at=created, sla_due_at=due, completed_at=completed)
        session.add(r)
        session.flush()
        return r

    sr1 = request(c1, p1, _at(day0, 0, 8), _at(day0, 0, 20), _at(day0, 2, 0))     # 43200 s, in SLA
    sr2 = request(c3, p2, _at(day0, 1, 0), _at(day0, 2, 12), _at(day0, 1, 12))    # 129600 s, late
    request(c4, p1, _at(day0, 1, 6), None, _at(day0, 3, 0))                        # open
    request(c2, p1, _at(day0, 0, 6), _at(day0, 0, 7), _at(day0, 1, 0))            # 3600 s, in SLA

    def survey(c: Conversation, kind: str, score: int | None, answered: datetime | None,
               sr: ServiceRequest | None = None) -> None:
        session.add(SurveyResponse(kind=kind, status="answered" if score is not None else "asked",
                                   conversation_id=c.id, subject=f"test:{marker}",
                                   service_request_id=sr.id if sr else None, score=score,
                                   asked_at=answered or _at(day0, 1, 0), answered_at=answered))

    survey(c1, "csat", 5, _at(day0, 0, 21), sr1)
    survey(c3, "csat", 2, _at(day0, 2, 13), sr2)
    survey(c2, "csat", 4, _at(day0, 1, 5))
    survey(c4, "csat", None, None)
    survey(c1, "csat", 1, day0 - timedelta(minutes=1))
    for c, score, day in ((c1, 10, 0), (c3, 9, 1), (c4, 7, 1), (c5, 3, 2), (c2, 0, 0), (c4, 10, 2)):
        survey(c, "nps", score, _at(day0, day, 18))
    session.add(FeedbackComment(conversation_id=c1.id, subject=f"test:{marker}", category="frequency",
                                text=f"Too many messages, stop. Ring me on {CANARY_PHONE} or {CANARY_EMAIL}, "
                                     f"Dr {CANARY_NAME}",
                                created_at=_at(day0, 0, 22)))
    session.flush()
    return Crafted(day0=day0, p1=p1, p2=p2, marker=marker)
