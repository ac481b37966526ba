"""Auto-assignment under load: 10 staff and 100 handoffs, with handoffs being opened, offered by two
sweepers at once (two app processes), accepted, declined, left to expire, claimed by hand and closed,
all concurrently. Afterwards the audit trail is replayed in order: no handoff was ever offered to
two people at once or claimed twice, and nobody ever held more than their capacity.

Runs on the suite's database: SQLite by default, PostgreSQL when CONCIERGE_TEST_DATABASE_URL is set."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.conversations import service as conversations
from api.db import unit_of_work
from api.errors import ConciergeError
from api.handoffs import assign
from api.handoffs import service as handoffs
from api.handoffs.assign import AssignPolicy
from api.handoffs.errors import AlreadyClaimed, AtCapacity, NotOffered
from api.handoffs.models import Handoff, HandoffOffer, HandoffStatus, OfferOutcome
from api.staff.models import StaffUser
from api.staff.service import StaffIdentity
from tests.consoles.handoff_factory import factory

STAFF = 10
HANDOFFS = 100
CAPACITY = 3
MARKET = "ZA"  # only this test's staff serve it, and only this test's handoffs are in it
POLICY = AssignPolicy(enabled=True, offer_timeout=timedelta(milliseconds=400), max_open=CAPACITY)
DEADLINE_S = 240


def _now() -> datetime:
    return datetime.now(UTC)


def test_ten_staff_and_a_hundred_handoffs_with_auto_assignment_never_double_up(engine: Engine) -> None:
    f = factory(engine)
    staff: list[StaffIdentity] = []
    with unit_of_work(f) as s:
        for i in range(STAFF):
            user = StaffUser(email=f"aa-{uuid.uuid4().hex[:10]}@halcyon.example", name=f"Assignee {i}",
                             password_hash="x", roles=["rep"], active=True, available=True, presence="online",
                             max_open=CAPACITY, markets=[MARKET], created_at=_now())
            s.add(user)
            s.flush()
            staff.append(StaffIdentity(id=user.id, email=user.email, name=user.name, roles=frozenset({"rep"}),
                                       territory=None, session_id="s", csrf_token="c"))
    ids: list[str] = []
    ids_lock = threading.Lock()
    done = threading.Event()
    failures: list[str] = []
    refused: Counter[str] = Counter()
    start = threading.Barrier(STAFF + 4)

    def guarded(name: str, body: callable) -> None:  # type: ignore[valid-type]
        try:
            start.wait()
            body()
        except Exception as exc:  # any error is a finding of this test
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            done.set()

    def opener(count: int) -> None:
        for _ in range(count):
            with unit_of_work(f) as s:
                conv, _token = conversations.create_webchat(s, now=_now(), market=MARKET)
                h = handoffs.open_handoff(s, conv, target="rep", reason="hcp_request", now=_now(), policy=POLICY)
                handoff_id = h.id
            with ids_lock:
                ids.append(handoff_id)
            time.sleep(random.random() * 0.02)

    def sweeper() -> None:
        while not done.is_set():
            with ids_lock:
                snapshot = list(ids)
            assign.sweep(f, POLICY, _now(), handoff_ids=snapshot)
            time.sleep(0.05)

    def worker(me: StaffIdentity) -> None:
        rnd = random.Random(me.id)
        # Two people are online but never answer offers: theirs must run out and move on.
        inattentive = me in staff[:2]
        # Two others grab from the shared queue whenever they can: capacity must stop them.
        grabber = me in staff[2:4]
        while not done.is_set():
            with ids_lock:
                snapshot = list(ids)
            if not snapshot:
                time.sleep(0.01)
                continue
            with f() as s:
                rows = s.execute(select(Handoff.id, Handoff.status, Handoff.offered_to, Handoff.claimed_by)
                                 .where(Handoff.id.in_(snapshot))).all()
            held = [r.id for r in rows if r.status == HandoffStatus.claimed and r.claimed_by == me.id]
            offered = [r.id for r in rows if r.status == HandoffStatus.queued and r.offered_to == me.id]
            waiting = [r.id for r in rows if r.status == HandoffStatus.queued and r.offered_to != me.id]
            roll = rnd.random()
            try:
                with unit_of_work(f) as s:
                    if held and roll < (0.1 if grabber else 0.4):
                        handoffs.close(s, rnd.choice(held), me, _now(), outcome="resolved")
                    elif offered and not inattentive and roll < 0.8:
                        handoffs.claim(s, rnd.choice(offered), me, _now(), POLICY)  # accept
                    elif offered and not inattentive and roll < 0.9:
                        assign.decline(s, rnd.choice(offered), me.id, POLICY, _now())
                    elif waiting and (roll > 0.97 or grabber):
                        handoffs.claim(s, rnd.choice(waiting), me, _now(), POLICY)  # by hand
            except (AtCapacity, AlreadyClaimed, NotOffered) as exc:
                refused[exc.code] += 1
            except ConciergeError as exc:
                failures.append(f"{me.name}: {exc.code}: {exc.message}")
            if len(snapshot) == HANDOFFS and all(r.status == HandoffStatus.closed for r in rows):
                done.set()
            time.sleep(rnd.random() * 0.01)

    threads = [threading.Thread(target=guarded, args=(f"opener {i}", lambda: opener(HANDOFFS // 2)))
               for i in range(2)]
    threads += [threading.Thread(target=guarded, args=(f"sweeper {i}", sweeper)) for i in range(2)]
    threads += [threading.Thread(target=guarded, args=(m.name, lambda m=m: worker(m))) for m in staff]
    began = time.monotonic()
    for t in threads:
        t.start()
    while not done.is_set() and time.monotonic() - began < DEADLINE_S:
        time.sleep(0.2)
    done.set()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - began
    try:
        assert not any(t.is_alive() for t in threads)
        assert failures == []
        assert len(ids) == HANDOFFS

        with f() as s:
            rows = {h.id: h for h in s.execute(select(Handoff).where(Handoff.id.in_(ids))).scalars()}
            events = list(s.execute(select(AuditEvent).where(AuditEvent.subject_id.in_(ids))
                                    .order_by(AuditEvent.seq)).scalars())
            offers = list(s.execute(select(HandoffOffer).where(HandoffOffer.handoff_id.in_(ids))).scalars())
        assert all(h.status == HandoffStatus.closed and h.offered_to is None for h in rows.values()), \
            f"not all closed within {DEADLINE_S}s"

        # Replay the trail in order.
        load: Counter[str] = Counter()
        offered_to: dict[str, str | None] = defaultdict(lambda: None)
        claims: Counter[str] = Counter()
        peak: Counter[str] = Counter()
        for e in events:
            h, who = e.subject_id or "", (e.data or {}).get("staff_id")
            if e.action == "handoff.offered":
                assert offered_to[h] is None, f"{h} offered to {who} while offered to {offered_to[h]}"
                offered_to[h] = who
                load[who] += 1
            elif e.action in ("handoff.offer_expired", "handoff.offer_declined", "handoff.offer_withdrawn"):
                assert offered_to[h] == who, f"{e.action} for {who} but {h} was offered to {offered_to[h]}"
                offered_to[h] = None
                load[who] -= 1
            elif e.action == "handoff.claimed":
                claims[h] += 1
                if e.data.get("accepted_offer"):
                    assert offered_to[h] == e.actor_id
                    offered_to[h] = None
                else:
                    assert offered_to[h] is None
                    load[e.actor_id or ""] += 1
            elif e.action == "handoff.closed":
                load[e.actor_id or ""] -= 1
            for person, n in load.items():
                assert 0 <= n <= CAPACITY, f"{person} at {n} open conversations after {e.action} (seq {e.seq})"
                peak[person] = max(peak[person], n)
        assert set(claims) == set(ids) and max(claims.values()) == 1  # each claimed exactly once
        assert all(n == 0 for n in load.values())
        assert all(o.outcome != OfferOutcome.pending for o in offers)
        outcomes = Counter(o.outcome for o in offers)
        # The paths under test were all taken, not just the easy one.
        assert outcomes[OfferOutcome.accepted] > 0 and outcomes[OfferOutcome.expired] > 0
        assert outcomes[OfferOutcome.declined] > 0
        accepted_by = Counter(e.actor_id for e in events if e.action == "handoff.claimed")
        print(f"\n{engine.dialect.name}: {HANDOFFS} handoffs closed in {elapsed:.1f}s; offers {dict(outcomes)}; "
              f"refusals {dict(refused)}; claims per person {sorted(accepted_by.values())}; "
              f"peak load {max(peak.values())} (capacity {CAPACITY})")
    finally:
        with unit_of_work(f) as s:  # leave no online staff behind for other tests
            for user in s.execute(select(StaffUser).where(StaffUser.id.in_([m.id for m in staff]))).scalars():
                user.presence = "offline"
