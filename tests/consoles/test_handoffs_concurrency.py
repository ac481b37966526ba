"""10 staff × 100 handoffs claimed concurrently against PostgreSQL → every handoff claimed exactly once."""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api.audit.models import AuditEvent
from api.handoffs.models import Handoff
from tests.consoles.conftest import StaffAccount, login
from tests.consoles.handoff_factory import factory, new_chat, post_json, queue_handoff

STAFF = 10
HANDOFFS = 100


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("CONCIERGE_TEST_DATABASE_URL"), reason="needs CONCIERGE_TEST_DATABASE_URL")
def test_ten_staff_claiming_a_hundred_handoffs_at_once_claim_each_exactly_once(
        engine: Engine, make_app_client: Callable[[], TestClient],
        make_staff: Callable[..., StaffAccount]) -> None:
    now = datetime.now(UTC)
    ids = [queue_handoff(engine, new_chat(engine, now=now), now=now) for _ in range(HANDOFFS)]
    staff = []
    for i in range(STAFF):
        account = make_staff("rep", name=f"Claimer {i}")
        client = make_app_client()  # one app and HTTP client per staff member, like ten browsers
        staff.append((account, client, login(client, account)))

    barrier = threading.Barrier(STAFF)
    wins: dict[str, list[str]] = {}
    refusals: dict[str, list[tuple[str, str, str]]] = {}
    other: list[tuple[str, int, str]] = []

    def work(account: StaffAccount, client: TestClient, csrf: str) -> None:
        order = ids[:]
        random.Random(account.id).shuffle(order)
        mine: list[str] = []
        lost: list[tuple[str, str, str]] = []
        barrier.wait()
        for handoff_id in order:
            res = post_json(client, f"/api/staff/inbox/{handoff_id}/claim", csrf)
            if res.status_code == 200:
                mine.append(handoff_id)
            elif res.status_code == 409 and res.json()["error"]["code"] == "already_claimed":
                error = res.json()["error"]
                lost.append((handoff_id, error["detail"]["claimed_by"], error["message"]))
            else:
                other.append((handoff_id, res.status_code, res.text[:300]))
        wins[account.id] = mine
        refusals[account.id] = lost

    threads = [threading.Thread(target=work, args=member) for member in staff]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads)

    assert other == []  # no errors other than "already claimed"
    claimed = Counter(h for won in wins.values() for h in won)
    assert sum(claimed.values()) == HANDOFFS and set(claimed) == set(ids)
    assert max(claimed.values()) == 1
    names = {account.id: account for account, _c, _t in staff}
    with factory(engine)() as s:
        rows = {h.id: h for h in s.execute(select(Handoff).where(Handoff.id.in_(ids))).scalars()}
        for staff_id, won in wins.items():
            assert all(rows[h].claimed_by == staff_id and rows[h].status == "claimed" for h in won)
        for lost in refusals.values():
            for handoff_id, holder, _message in lost:
                assert rows[handoff_id].claimed_by == holder and holder in names  # told who really has it
        audited = s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.subject_id.in_(ids), AuditEvent.action == "handoff.claimed")).scalar_one()
    assert audited == HANDOFFS
    assert sum(len(lost) for lost in refusals.values()) == HANDOFFS * (STAFF - 1)
