"""Auto-assignment: a queued handoff is offered to one person of its team, without a manual claim.

Who: active staff of the handoff's team (rep, MSL, medical reviewer) whose presence is ``online``,
who serve its market and the HCP's language (an empty list serves all) and, as for the queue, whose
territory does not exclude the HCP. The HCP's own rep/MSL first, then round-robin: the one offered
least recently. Nobody is offered more than their capacity: handoffs they hold plus offers pending
(``max_open``, else ``CONCIERGE_ASSIGN_MAX_OPEN``).

An offer lasts ``CONCIERGE_ASSIGN_OFFER_TIMEOUT_S``; then (or when declined, or when the person goes
away) it moves to the next person who has not had it. Accepting is claiming. Manual claim still
works for the whole team: claiming a handoff offered to a colleague withdraws their offer. With
nobody to offer to, the handoff simply waits in the shared queue, as without auto-assignment.

Atomicity: whoever raises a person's load (an offer, a claim) first locks that person's staff row
(offers with SKIP LOCKED, so two sweepers never wait on each other) and re-counts under the lock;
the handoff row changes only by conditional UPDATE (``offered_to IS NULL`` / ``status = queued``).
On SQLite every write transaction is already serialised (``BEGIN IMMEDIATE``).

Every decision is audited: ``handoff.offered``, ``handoff.offer_expired``, ``handoff.offer_declined``,
``handoff.offer_withdrawn``, ``handoff.not_offered``, ``staff.presence_changed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.audit import service as audit
from api.conversations.models import Conversation
from api.db import unit_of_work
from api.errors import InvalidInput
from api.handoffs.errors import AtCapacity, NotOffered
from api.handoffs.models import Handoff, HandoffOffer, HandoffStatus, HandoffTarget, OfferOutcome
from api.hcps.models import Hcp
from api.settings import Settings
from api.staff.models import Presence, StaffRole, StaffUser

# Who works a target's queue (the team).
ROLE_FOR_TARGET = {
    HandoffTarget.rep: StaffRole.rep,
    HandoffTarget.msl: StaffRole.msl,
    HandoffTarget.medical_information: StaffRole.medical_reviewer,
}


@dataclass(frozen=True)
class AssignPolicy:
    enabled: bool = False
    offer_timeout: timedelta = timedelta(minutes=3)
    max_open: int = 5


OFF = AssignPolicy()


def assign_policy(settings: Settings) -> AssignPolicy:
    return AssignPolicy(enabled=settings.auto_assign, offer_timeout=timedelta(seconds=settings.assign_offer_timeout_s),
                        max_open=settings.assign_max_open)


def capacity(user: StaffUser, policy: AssignPolicy) -> int:
    return user.max_open if user.max_open is not None else policy.max_open


def load(session: Session, staff_id: str, *, excluding: str | None = None) -> int:
    """Open conversations of this person: handoffs they hold plus handoffs offered to them."""
    q = select(func.count()).select_from(Handoff).where(or_(
        (Handoff.status == HandoffStatus.claimed) & (Handoff.claimed_by == staff_id),
        (Handoff.status == HandoffStatus.queued) & (Handoff.offered_to == staff_id)))
    if excluding is not None:
        q = q.where(Handoff.id != excluding)
    return int(session.execute(q).scalar_one())


def hcp_language(session: Session, conv: Conversation) -> str | None:
    """The language the HCP asked to be contacted in (their engagement profile), if any."""
    from feedback import service as feedback

    value = feedback.profile(session, conv).get("language")
    return value[:8].lower() if value else None


def _serves(user: StaffUser, handoff: Handoff, hcp_territory: str | None) -> bool:
    if ROLE_FOR_TARGET[HandoffTarget(handoff.target)] not in user.roles:
        return False
    if user.markets and handoff.market and handoff.market.upper() not in {m.upper() for m in user.markets}:
        return False
    if user.languages and handoff.language and handoff.language.lower() not in {x.lower() for x in user.languages}:
        return False
    # As the queue's visibility rule (service.get_for_staff): a territory only excludes other territories.
    return not (user.territory and hcp_territory and user.territory != hcp_territory
                and handoff.requested_staff_id != user.id)


def _tried(session: Session, handoff_id: str) -> set[str]:
    """People whose offer of this handoff expired or was declined, or who released it: it moves on past them."""
    rows = session.execute(select(HandoffOffer.staff_id).where(
        HandoffOffer.handoff_id == handoff_id,
        HandoffOffer.outcome.in_((OfferOutcome.declined, OfferOutcome.expired, OfferOutcome.released))))
    return set(rows.scalars())


def candidates(session: Session, handoff: Handoff) -> list[StaffUser]:
    """Who may be offered the handoff now, in offer order (capacity is checked under the lock)."""
    hcp = session.get(Hcp, handoff.hcp_id) if handoff.hcp_id else None
    tried = _tried(session, handoff.id)
    rows = session.execute(select(StaffUser).where(StaffUser.active.is_(True),
                                                   StaffUser.presence == Presence.online)).scalars()
    found = [u for u in rows if u.id not in tried and _serves(u, handoff, hcp.territory if hcp else None)]
    epoch = datetime.min.replace(tzinfo=handoff.created_at.tzinfo)
    found.sort(key=lambda u: (u.id != handoff.requested_staff_id, u.last_offered_at or epoch, u.id))
    return found


def _record(session: Session, action: str, handoff: Handoff, now: datetime, *, actor_id: str | None = None,
            **data: Any) -> None:
    audit.record(session, action=action, subject_type="handoff", subject_id=handoff.id,
                 actor_type="staff" if actor_id else "system", actor_id=actor_id,
                 data={"reference": handoff.reference, "conversation_id": handoff.conversation_id, **data}, at=now)


def offer_next(session: Session, handoff: Handoff, policy: AssignPolicy, now: datetime, *,
               why: str = "queued", record_none: bool = True) -> StaffUser | None:
    """Offer the handoff to the next person who fits and has room; None when nobody does (it then
    waits in the shared queue). Safe to call from several processes at once."""
    if not policy.enabled or handoff.status != HandoffStatus.queued or handoff.offered_to is not None:
        return None
    for user in candidates(session, handoff):
        locked = session.execute(
            select(StaffUser).where(StaffUser.id == user.id, StaffUser.active.is_(True),
                                    StaffUser.presence == Presence.online)
            .with_for_update(skip_locked=True).execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if locked is None:
            continue  # went away meanwhile, or another transaction is changing their load right now
        limit = capacity(locked, policy)
        held = load(session, locked.id)
        if held >= limit:
            continue
        expires = now + policy.offer_timeout
        won = session.execute(
            update(Handoff).where(Handoff.id == handoff.id, Handoff.status == HandoffStatus.queued,
                                  Handoff.offered_to.is_(None))
            .values(offered_to=locked.id, offered_at=now, offer_expires_at=expires)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        _refresh(session, handoff)
        if won != 1:
            return None  # claimed or offered by someone else meanwhile
        locked.last_offered_at = now
        rounds = session.execute(select(func.count()).select_from(HandoffOffer)
                                 .where(HandoffOffer.handoff_id == handoff.id)).scalar_one()
        session.add(HandoffOffer(handoff_id=handoff.id, staff_id=locked.id, offered_at=now, expires_at=expires,
                                 outcome=OfferOutcome.pending))
        _record(session, "handoff.offered", handoff, now, staff_id=locked.id, expires_at=expires.isoformat(),
                load=held + 1, capacity=limit, offer_number=int(rounds) + 1, why=why,
                market=handoff.market, language=handoff.language)
        return locked
    if record_none:
        _record(session, "handoff.not_offered", handoff, now, why=why,
                reason="nobody of the team who fits is online with room; it waits in the shared queue")
    return None


def _refresh(session: Session, handoff: Handoff) -> None:
    session.execute(select(Handoff).where(Handoff.id == handoff.id)
                    .execution_options(populate_existing=True)).scalar_one()


def _close_offers(session: Session, handoff_id: str, outcome: str, now: datetime,
                  staff_id: str | None = None) -> list[HandoffOffer]:
    q = select(HandoffOffer).where(HandoffOffer.handoff_id == handoff_id, HandoffOffer.outcome == OfferOutcome.pending)
    if staff_id is not None:
        q = q.where(HandoffOffer.staff_id == staff_id)
    rows = list(session.execute(q).scalars())
    for row in rows:
        row.outcome = outcome
        row.decided_at = now
    return rows


def reserve_for_claim(session: Session, handoff: Handoff, staff_id: str, policy: AssignPolicy) -> None:
    """Before a claim with auto-assignment on: lock the claimant's row and refuse when at capacity
    (the handoff itself does not count when it is already offered to them)."""
    if not policy.enabled:
        return
    user = session.execute(select(StaffUser).where(StaffUser.id == staff_id).with_for_update()
                           .execution_options(populate_existing=True)).scalar_one()
    limit = capacity(user, policy)
    held = load(session, staff_id, excluding=handoff.id)
    if held >= limit:
        raise AtCapacity(f"you already have {held} open conversation{'s' if held != 1 else ''} (your limit is "
                         f"{limit}); close or hand one back before taking {handoff.reference}. It stays in the "
                         "queue for your colleagues.", detail={"load": held, "capacity": limit})


def settle_on_claim(session: Session, handoff: Handoff, claimer_id: str, now: datetime) -> bool:
    """After a won claim: the claimer's own offer is accepted, anyone else's withdrawn. True when the
    claimer accepted an offer made to them."""
    accepted = False
    for row in _close_offers(session, handoff.id, OfferOutcome.withdrawn, now):
        if row.staff_id == claimer_id:
            row.outcome = OfferOutcome.accepted
            accepted = True
        else:
            _record(session, "handoff.offer_withdrawn", handoff, now, staff_id=row.staff_id,
                    reason="claimed by a colleague", claimed_by=claimer_id)
    return accepted


def remember_release(session: Session, handoff: Handoff, staff_id: str, now: datetime) -> None:
    """Whoever puts a handoff back in the queue is not offered it again."""
    session.add(HandoffOffer(handoff_id=handoff.id, staff_id=staff_id, offered_at=now, expires_at=now,
                             outcome=OfferOutcome.released, decided_at=now))


def withdraw(session: Session, handoff: Handoff, now: datetime, *, reason: str, actor_id: str | None = None,
             actor_type: str | None = None) -> None:
    """The handoff leaves its offer (transfer, the HCP cancels, …): clear it and close the pending offer."""
    handoff.offered_to = None
    handoff.offered_at = None
    handoff.offer_expires_at = None
    for row in _close_offers(session, handoff.id, OfferOutcome.withdrawn, now):
        audit.record(session, action="handoff.offer_withdrawn", subject_type="handoff", subject_id=handoff.id,
                     actor_type=actor_type or ("staff" if actor_id else "system"), actor_id=actor_id,
                     data={"reference": handoff.reference, "conversation_id": handoff.conversation_id,
                           "staff_id": row.staff_id, "reason": reason}, at=now)


def _take_back(session: Session, handoff_id: str, staff_id: str, now: datetime, *, expired_only: bool) -> bool:
    q = update(Handoff).where(Handoff.id == handoff_id, Handoff.status == HandoffStatus.queued,
                              Handoff.offered_to == staff_id)
    if expired_only:
        q = q.where(Handoff.offer_expires_at <= now)
    won = session.execute(q.values(offered_to=None, offered_at=None, offer_expires_at=None)
                          .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    return bool(won == 1)


def decline(session: Session, handoff_id: str, staff_id: str, policy: AssignPolicy, now: datetime) -> Handoff:
    """The offered person says no: the offer moves to the next person (or the shared queue)."""
    handoff = session.get(Handoff, handoff_id)
    if handoff is None or not _take_back(session, handoff_id, staff_id, now, expired_only=False):
        ref = handoff.reference if handoff is not None else "this handoff"
        raise NotOffered(f"{ref} is not offered to you any more (it may have expired or been claimed); "
                         "nothing changed")
    _refresh(session, handoff)
    _close_offers(session, handoff_id, OfferOutcome.declined, now, staff_id=staff_id)
    _record(session, "handoff.offer_declined", handoff, now, actor_id=staff_id, staff_id=staff_id)
    offer_next(session, handoff, policy, now, why="declined")
    return handoff


def expire(session: Session, handoff_id: str, policy: AssignPolicy, now: datetime) -> bool:
    """An offer past its time moves to the next person. False when it was settled meanwhile."""
    handoff = session.get(Handoff, handoff_id)
    if handoff is None or handoff.offered_to is None:
        return False
    staff_id = handoff.offered_to
    if not _take_back(session, handoff_id, staff_id, now, expired_only=True):
        return False
    _refresh(session, handoff)
    _close_offers(session, handoff_id, OfferOutcome.expired, now, staff_id=staff_id)
    _record(session, "handoff.offer_expired", handoff, now, staff_id=staff_id)
    offer_next(session, handoff, policy, now, why="expired")
    return True


def set_presence(session: Session, user: StaffUser, presence: str, policy: AssignPolicy, now: datetime, *,
                 actor_id: str) -> list[str]:
    """Online / away / offline. Going away hands one's pending offers on (nothing waits on an absent
    person). Returns the ids of the handoffs that moved."""
    if presence not in Presence.__members__:
        raise InvalidInput(f"unknown presence {presence!r}; choose one of {', '.join(Presence)}")
    before = user.presence
    user.presence = presence
    audit.record(session, action="staff.presence_changed", subject_type="staff_user", subject_id=user.id,
                 actor_type="staff", actor_id=actor_id, data={"before": before, "after": presence}, at=now)
    moved: list[str] = []
    if presence == Presence.online:
        return moved
    pending = session.execute(select(Handoff).where(Handoff.offered_to == user.id,
                                                    Handoff.status == HandoffStatus.queued)).scalars().all()
    for handoff in pending:
        if _take_back(session, handoff.id, user.id, now, expired_only=False):
            _refresh(session, handoff)
            _close_offers(session, handoff.id, OfferOutcome.withdrawn, now, staff_id=user.id)
            _record(session, "handoff.offer_withdrawn", handoff, now, actor_id=actor_id, staff_id=user.id,
                    reason=f"went {presence}")
            moved.append(handoff.id)
            offer_next(session, handoff, policy, now, why=f"previous person went {presence}")
    return moved


def online_count(session: Session, role: str) -> int:
    rows = session.execute(select(StaffUser.roles).where(StaffUser.active.is_(True),
                                                         StaffUser.presence == Presence.online)).scalars()
    return sum(1 for roles in rows if role in roles)


def set_profile(session: Session, user: StaffUser, *, max_open: int | None, languages: Iterable[str],
                markets: Iterable[str], now: datetime, actor_id: str) -> StaffUser:
    """Capacity (None: the default), languages and markets (empty: any) of one person; an admin's
    change, checked whole before anything is set, and audited."""
    if max_open is not None and not 1 <= max_open <= 100:
        raise InvalidInput("capacity must be between 1 and 100 open conversations (empty: the default)")
    langs = sorted({x.strip().lower() for x in languages if x.strip()})
    if any(len(c) > 8 or not c.replace("-", "").isalpha() for c in langs):
        raise InvalidInput("languages are codes such as en, fr or pt-br, separated by commas")
    codes = sorted({m.strip().upper() for m in markets if m.strip()})
    if any(len(c) != 2 or not c.isalpha() for c in codes):
        raise InvalidInput("markets are two-letter country codes such as GB or DE, separated by commas")
    before = {"max_open": user.max_open, "languages": user.languages, "markets": user.markets}
    user.max_open, user.languages, user.markets = max_open, langs, codes
    audit.record(session, action="staff.assignment_profile", subject_type="staff_user", subject_id=user.id,
                 actor_type="staff", actor_id=actor_id,
                 data={"before": before, "after": {"max_open": max_open, "languages": langs, "markets": codes}},
                 at=now)
    return user


# ---------------------------------------------------------------- the sweep


@dataclass
class SweepReport:
    expired: int = 0
    offered: int = 0
    waiting: int = 0
    offers: list[tuple[str, str]] = field(default_factory=list)  # (handoff id, staff id)


def sweep(factory: sessionmaker[Session], policy: AssignPolicy, now: datetime, *, limit: int = 500,
          handoff_ids: Iterable[str] | None = None) -> SweepReport:
    """Expired offers move on; waiting handoffs are offered. One short transaction per handoff."""
    report = SweepReport()
    if not policy.enabled:
        return report
    only = list(handoff_ids) if handoff_ids is not None else None
    with factory() as s:
        q = select(Handoff.id).where(Handoff.status == HandoffStatus.queued, Handoff.offered_to.is_not(None),
                                     Handoff.offer_expires_at <= now)
        if only is not None:
            q = q.where(Handoff.id.in_(only))
        expired = list(s.execute(q.order_by(Handoff.offer_expires_at).limit(limit)).scalars())
    for handoff_id in expired:
        with unit_of_work(factory) as session:
            if expire(session, handoff_id, policy, now):
                report.expired += 1
    with factory() as s:
        # Read first, write only where someone online with room could take it: a sweep over a
        # queue nobody can serve now opens no write transaction (SQLite has one writer).
        online = s.execute(select(StaffUser).where(StaffUser.active.is_(True),
                                                   StaffUser.presence == Presence.online)).scalars().all()
        free = [u for u in online if load(s, u.id) < capacity(u, policy)]
        if not free:
            return report
        wq = select(Handoff).where(Handoff.status == HandoffStatus.queued, Handoff.offered_to.is_(None))
        if only is not None:
            wq = wq.where(Handoff.id.in_(only))
        rows = s.execute(wq.order_by(Handoff.sla_due_at, Handoff.id).limit(limit)).scalars().all()
        waiting = [h.id for h in rows if any(_serves(u, h, None) for u in free)]
        report.waiting = len(rows) - len(waiting)
    for handoff_id in waiting:
        with unit_of_work(factory) as session:
            handoff = session.get(Handoff, handoff_id)
            if handoff is None:
                continue
            person = offer_next(session, handoff, policy, now, why="sweep", record_none=False)
            if person is not None:
                report.offered += 1
                report.offers.append((handoff_id, person.id))
            else:
                report.waiting += 1
    return report
