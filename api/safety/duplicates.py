"""Possible duplicate cases: the same event reported twice, linked for a safety reviewer to decide.

A new case (or a case that gains evidence from a follow-up) is a *possible duplicate* of an
earlier open case of the same kind when all of these hold:

- the same reporter: the same HCP (when known) or the same conversation;
- a suspect product in common;
- an event in common: a symptom or seriousness term found in both cases' text (``api.safety.rules``
  vocabulary, singular and plural alike), or for special situations without a named symptom the
  same category (overdose, pregnancy, …; "side effect" alone says nothing about the event);
- day 0 of the two cases at most 30 days apart.

The link (``adverse_event_duplicate``) changes neither case: the reviewer confirms or rejects it
once, with a reason (required to reject), and both cases' trails show the decision. A follow-up
inside 24 h in the same conversation never gets here: ``api.safety.service`` links it to the
open case instead of opening a new one.

Checking never costs a case: ``flag_possible_duplicates`` runs in a savepoint and a failure is
logged and audited, while the case it was checking stays recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.errors import Conflict, InvalidInput, NotFound
from api.safety import rules
from api.safety.models import AdverseEvent, AdverseEventDuplicate, AeStatus, DuplicateStatus
from api.staff import notes
from api.staff.models import StaffUser

log = logging.getLogger("concierge.safety.duplicates")

WINDOW = timedelta(days=30)
OPEN = (AeStatus.new, AeStatus.triaged)
MAX_CANDIDATES = 50
MAX_REASON = 1000
DECISIONS = (DuplicateStatus.confirmed, DuplicateStatus.rejected)
# A category that names the event by itself; "side_effect" says only that something happened.
UNSPECIFIC_CATEGORIES = frozenset({"side_effect"})


def _singular(term: str) -> str:
    term = " ".join(term.lower().split())
    if term.endswith("es") and term[:-2].endswith(("sh", "ch", "x", "ss")):
        return term[:-2]
    if term.endswith("s") and not term.endswith(("ss", "us", "is")):
        return term[:-1]
    return term


def event_terms(case: AdverseEvent) -> dict[str, str]:
    """What the case says happened: comparable key (``term:rash``, ``category:overdose``) → the words used."""
    norm = rules.normalise(case.raw_text or "")
    terms = [m.group(0) for m in rules.SYMPTOMS.finditer(norm)]
    terms += [*rules.serious_terms(norm), *(case.serious_terms or [])]
    found: dict[str, str] = {}
    for term in terms:
        if term.strip():
            found.setdefault(f"term:{_singular(term)}", " ".join(term.lower().split()))
    for category in case.categories or []:
        if category not in UNSPECIFIC_CATEGORIES:
            found.setdefault(f"category:{category}", category.replace("_", " "))
    return found


def event_keys(case: AdverseEvent) -> set[str]:
    return set(event_terms(case))


def match(case: AdverseEvent, other: AdverseEvent) -> dict[str, Any] | None:
    """Why ``case`` may duplicate ``other`` (JSON-able), or None when it does not."""
    if case.id == other.id or case.kind != other.kind:
        return None
    same = []
    if case.hcp_id and case.hcp_id == other.hcp_id:
        same.append("hcp")
    if case.conversation_id == other.conversation_id:
        same.append("conversation")
    if not same:
        return None
    products = sorted(set(case.products or []) & set(other.products or []))
    if not products:
        return None
    apart = abs(case.day0_at - other.day0_at)
    if apart > WINDOW:
        return None
    mine = event_terms(case)
    events = sorted(set(mine) & event_keys(other))
    if not events:
        return None
    return {"same": same, "products": products, "events": events, "event_words": [mine[e] for e in events],
            "days_apart": round(apart.total_seconds() / 86400, 1)}


def _candidates(session: Session, case: AdverseEvent) -> list[AdverseEvent]:
    """Earlier open cases of the same kind from the same HCP or conversation, day 0 within the window."""
    same_reporter = AdverseEvent.conversation_id == case.conversation_id
    if case.hcp_id:
        same_reporter = or_(same_reporter, AdverseEvent.hcp_id == case.hcp_id)
    rows = session.execute(
        select(AdverseEvent).where(
            AdverseEvent.id != case.id, AdverseEvent.kind == case.kind,
            AdverseEvent.status.in_([str(s) for s in OPEN]), same_reporter,
            AdverseEvent.created_at <= case.created_at,
            AdverseEvent.day0_at >= case.day0_at - WINDOW, AdverseEvent.day0_at <= case.day0_at + WINDOW,
        ).order_by(AdverseEvent.created_at.desc(), AdverseEvent.id).limit(MAX_CANDIDATES)
    ).scalars()
    return list(rows)


def _find_and_link(session: Session, case: AdverseEvent, now: datetime) -> list[AdverseEventDuplicate]:
    known = set(session.execute(
        select(AdverseEventDuplicate.candidate_id).where(AdverseEventDuplicate.case_id == case.id)).scalars())
    known |= set(session.execute(
        select(AdverseEventDuplicate.case_id).where(AdverseEventDuplicate.candidate_id == case.id)).scalars())
    made: list[AdverseEventDuplicate] = []
    for other in _candidates(session, case):
        if other.id in known:
            continue
        reasons = match(case, other)
        if reasons is None:
            continue
        link = AdverseEventDuplicate(case_id=case.id, candidate_id=other.id, reasons=reasons,
                                     status=DuplicateStatus.possible, created_at=now)
        session.add(link)
        session.flush()
        made.append(link)
        for subject, counterpart in ((case, other), (other, case)):
            audit.record(session, action="adverse_event.possible_duplicate", subject_type="adverse_event",
                         subject_id=subject.id,
                         data={"link_id": link.id, "case_id": case.id, "candidate_id": other.id,
                               "other_reference": counterpart.reference, "reasons": reasons}, at=now)
    return made


def flag_possible_duplicates(session: Session, case: AdverseEvent, now: datetime) -> list[AdverseEventDuplicate]:
    """Link ``case`` to the earlier open cases it may duplicate (once per pair); never raises."""
    try:
        with session.begin_nested():
            return _find_and_link(session, case, now)
    except Exception:  # the case itself must be kept whatever goes wrong here
        log.exception("duplicate check failed for adverse_event %s", case.id)
        audit.record(session, action="adverse_event.duplicate_check_failed", subject_type="adverse_event",
                     subject_id=case.id, data={}, at=now)
        return []


# ---------------------------------------------------------------- the reviewer's side


@dataclass(frozen=True)
class DuplicateLink:
    link: AdverseEventDuplicate
    other: AdverseEvent  # the case at the other end of the link
    this_is_newer: bool  # True: this case may duplicate ``other`` (which came first)
    decided_by_name: str | None

    @property
    def reasons_label(self) -> str:
        r = self.link.reasons or {}
        words = r.get("event_words") or [e.split(":", 1)[-1].replace("_", " ") for e in r.get("events", [])]
        events = ", ".join(words)
        same = " and ".join("HCP" if x == "hcp" else x for x in r.get("same", []))
        return (f"same {same}; product {', '.join(r.get('products', []))}; "
                f"event {events}; day 0 {r.get('days_apart', '?')} days apart")

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.link.id, "status": self.link.status, "case_id": self.link.case_id,
                "candidate_id": self.link.candidate_id, "other_id": self.other.id,
                "other_reference": self.other.reference, "other_status": self.other.status,
                "this_is_newer": self.this_is_newer, "reasons": dict(self.link.reasons or {}),
                "created_at": self.link.created_at.isoformat(),
                "decided_by": self.link.decided_by, "decided_by_name": self.decided_by_name,
                "decided_at": self.link.decided_at.isoformat() if self.link.decided_at else None}


def _names(session: Session, ids: Collection[str | None]) -> dict[str, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return {row.id: row.name for row in session.execute(
        select(StaffUser.id, StaffUser.name).where(StaffUser.id.in_(wanted)))}


def list_for_case(session: Session, case_id: str) -> list[DuplicateLink]:
    """Every duplicate link of a case, either way round: undecided first, then the newest."""
    links = list(session.execute(
        select(AdverseEventDuplicate)
        .where(or_(AdverseEventDuplicate.case_id == case_id, AdverseEventDuplicate.candidate_id == case_id))
        .order_by(AdverseEventDuplicate.created_at.desc(), AdverseEventDuplicate.id)).scalars())
    links.sort(key=lambda x: x.status != DuplicateStatus.possible)
    others = {c.id: c for c in session.execute(select(AdverseEvent).where(AdverseEvent.id.in_(
        {x.candidate_id if x.case_id == case_id else x.case_id for x in links}))).scalars()} if links else {}
    names = _names(session, [x.decided_by for x in links])
    return [DuplicateLink(x, others[x.candidate_id if x.case_id == case_id else x.case_id], x.case_id == case_id,
                          names.get(x.decided_by or "")) for x in links]


def undecided_counts(session: Session, case_ids: Collection[str]) -> dict[str, int]:
    """Open (undecided) duplicate links per case, for the queue's badge."""
    if not case_ids:
        return {}
    out: dict[str, int] = {}
    for case_id, candidate_id in session.execute(
            select(AdverseEventDuplicate.case_id, AdverseEventDuplicate.candidate_id).where(
                AdverseEventDuplicate.status == DuplicateStatus.possible,
                or_(AdverseEventDuplicate.case_id.in_(case_ids), AdverseEventDuplicate.candidate_id.in_(case_ids)))):
        for cid in (case_id, candidate_id):
            if cid in case_ids:
                out[cid] = out.get(cid, 0) + 1
    return out


def decide(session: Session, case_id: str, link_id: str, *, decision: str, actor_id: str, now: datetime,
           reason: str | None = None) -> AdverseEventDuplicate:
    """Confirm or reject a possible duplicate (once: the first decision wins); audited on both cases."""
    link = session.get(AdverseEventDuplicate, link_id)
    if link is None or case_id not in (link.case_id, link.candidate_id):
        raise NotFound("no such duplicate link on this case")
    if decision not in DECISIONS:
        raise InvalidInput(f"decide with one of: {', '.join(DECISIONS)}")
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
    if decision == DuplicateStatus.rejected and not reason:
        raise InvalidInput("say why these are different cases")
    if link.status != DuplicateStatus.possible:
        raise _decided(session, link)
    moved = session.execute(
        update(AdverseEventDuplicate)
        .where(AdverseEventDuplicate.id == link.id, AdverseEventDuplicate.status == DuplicateStatus.possible)
        .values(status=decision, decided_by=actor_id, decided_at=now).execution_options(synchronize_session=False))
    if int(cast(CursorResult[Any], moved).rowcount) == 0:
        raise _decided(session, link)
    session.refresh(link)
    cases = {c.id: c for c in session.execute(
        select(AdverseEvent).where(AdverseEvent.id.in_([link.case_id, link.candidate_id]))).scalars()}
    kept = notes.keep(session, reason, subject_type="adverse_event_duplicate", subject_id=link.id, field="reason",
                      author_id=actor_id, at=now)
    for subject, other in ((link.case_id, link.candidate_id), (link.candidate_id, link.case_id)):
        audit.record(session, action=f"adverse_event.duplicate_{decision}", subject_type="adverse_event",
                     subject_id=subject, actor_type="staff", actor_id=actor_id,
                     data={"link_id": link.id, "case_id": link.case_id, "candidate_id": link.candidate_id,
                           "other_reference": cases[other].reference, **kept}, at=now)
    return link


def _decided(session: Session, link: AdverseEventDuplicate) -> Conflict:
    session.refresh(link)
    who = _names(session, [link.decided_by]).get(link.decided_by or "", "another reviewer")
    at = link.decided_at.strftime("%d %b %Y %H:%M UTC") if link.decided_at else "an earlier time"
    return Conflict(f"this possible duplicate was already {link.status} by {who} at {at}",
                    detail={"status": link.status, "by": link.decided_by})
