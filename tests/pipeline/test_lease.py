"""Conversation leases on PostgreSQL (api/pipeline/lease.py): one holder at a time, a kick that finds the
lease taken is not lost, a holder that lost its lease cannot finish a turn, stale rows are dropped, and a
web chat request gets the reply of a turn run by another process even with Redis away."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from api.conversations import service as conversations
from api.conversations.models import Conversation, InboxItem, InboxStatus, Message
from api.db import make_session_factory, unit_of_work
from api.pipeline.lease import LeaseLost, LeaseStore
from tests.conftest import free_port
from tests.fakes.rasa import FakeRasa

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _postgres_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("leases are for several processes on PostgreSQL (SQLite: one process per database)")


def _store(engine: Engine, name: str, lease_s: float = 30.0) -> LeaseStore:
    return LeaseStore(engine, lease_s=lease_s, holder=f"test-{name}-{uuid.uuid4().hex[:8]}")


def _expire(engine: Engine, conversation_id: str) -> None:
    """As if the holder had died a while ago (its heartbeat stopped)."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE conversation_lease SET expires_at = now() - interval '1 second' "
                          "WHERE conversation_id = :c"), {"c": conversation_id})


def _webchat_message(engine: Engine, text_: str) -> tuple[str, str]:
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    with unit_of_work(factory) as s:
        conv, _token = conversations.create_webchat(s, now=now, market="US")
        stored = conversations.persist_inbound(s, conv, text=text_, now=now)
        return conv.id, stored.inbox.id


def test_one_holder_at_a_time_and_an_expired_lease_is_taken_over(engine: Engine) -> None:
    first, second = _store(engine, "first"), _store(engine, "second")
    cid = uuid.uuid4().hex
    assert first.acquire(cid)
    assert first.acquire(cid)        # ours already: kept (and renewed)
    assert not second.acquire(cid)   # live, someone else's
    _expire(engine, cid)
    assert second.acquire(cid)
    with Session(engine) as s, pytest.raises(LeaseLost):
        first.fence(s, cid)          # the old holder can no longer commit a step
    second.release_all()


def test_lease_times_come_from_the_database_clock_never_the_process_clock(engine: Engine) -> None:
    from api.pipeline import lease

    # No statement takes a time from the process: a holder whose clock is off cannot stretch or cut a lease.
    for stmt in (lease._ACQUIRE, lease._FENCE, lease._HEARTBEAT, lease._ORPHANS, lease._FORGET):
        assert {"ttl", "cid", "holder", "channels", "skip"} >= set(stmt.compile().params)
    store = _store(engine, "clock", lease_s=30.0)
    cid = uuid.uuid4().hex
    store.acquire(cid)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT expires_at - now() FROM conversation_lease WHERE conversation_id = :c"),
                            {"c": cid}).scalar_one()
    assert 0 < left.total_seconds() <= 30.0
    store.release_all()


def test_a_message_stored_while_another_process_holds_the_lease_is_seen_when_it_lets_go(engine: Engine) -> None:
    holder, kicker = _store(engine, "holder"), _store(engine, "kicker")
    cid, _inbox_id = _webchat_message(engine, "stored while the lease was taken")
    assert holder.acquire(cid)
    assert not kicker.acquire(cid)    # the kick of the process that stored it finds the lease taken ...
    assert holder.release_and_check(cid)  # ... and the holder, letting go, sees the pending message
    assert kicker.acquire(cid)
    with engine.begin() as conn:  # nothing left pending for the apps of later tests to take up
        conn.execute(text("UPDATE inbox SET status = 'done' WHERE conversation_id = :c"), {"c": cid})
    kicker.release_all()


def test_stale_leases_of_deleted_or_finished_conversations_are_dropped_and_never_taken_up(engine: Engine) -> None:
    dead = _store(engine, "dead")
    sweeper = _store(engine, "sweeper")
    gone = uuid.uuid4().hex          # a conversation that no longer exists (or never did)
    done_cid, done_inbox = _webchat_message(engine, "finished long ago")
    with engine.begin() as conn:
        conn.execute(text("UPDATE inbox SET status = 'done' WHERE id = :i"), {"i": done_inbox})
    for cid in (gone, done_cid):
        assert dead.acquire(cid)
        _expire(engine, cid)
    pending_cid, _ = _webchat_message(engine, "its holder died mid-turn")
    assert dead.acquire(pending_cid)
    _expire(engine, pending_cid)
    found = dict(sweeper.orphans(channels=("webchat",)))
    assert found.get(pending_cid) is False        # taken up at once: its lease expired
    assert gone not in found and done_cid not in found
    with engine.connect() as conn:
        left = set(conn.execute(text("SELECT conversation_id FROM conversation_lease WHERE conversation_id IN "
                                     "(:a, :b, :c)"), {"a": gone, "b": done_cid, "c": pending_cid}).scalars())
    assert left == {pending_cid}                  # the two stale rows are gone, the one with work stays
    assert sweeper.acquire(pending_cid)
    with engine.begin() as conn:  # nothing left pending for the apps of later tests to take up
        conn.execute(text("UPDATE inbox SET status = 'done' WHERE conversation_id = :c"), {"c": pending_cid})
    sweeper.release_all()


# -- with the app ------------------------------------------------------------------------------------

def _replies(engine: Engine, message_id: int) -> list[str]:
    with Session(engine) as s:
        return [m.body for m in conversations.replies_to(s, message_id)]


def test_a_holder_that_lost_its_lease_mid_turn_stores_nothing_and_the_new_holder_runs_the_turn_once(
        engine: Engine, make_client: Callable[..., TestClient]) -> None:
    rasa = FakeRasa(delay=1.0)
    # A long lease: the app's heartbeat (a third of it) does not renew the lease the test expires.
    client = make_client(rasa, inbox_sweep_interval_s=0, conversation_lease_s=600)
    worker = client.app.state.concierge.worker  # type: ignore[attr-defined]
    intruder = _store(engine, "intruder")
    cid, inbox_id = _webchat_message(engine, "who answers this one")

    def steal() -> None:     # while Rasa thinks: the lease expires and another process takes it
        while not any(c["sender"] == cid for c in rasa.calls):  # (the app also resumes other tests' leftovers)
            time.sleep(0.02)
        _expire(engine, cid)
        assert intruder.acquire(cid)

    thief = threading.Thread(target=steal)
    thief.start()
    client.portal.call(worker.kick, cid)  # type: ignore[union-attr]
    client.portal.call(worker.idle)  # type: ignore[union-attr]
    thief.join()
    with Session(engine) as s:
        inbox = s.get(InboxItem, inbox_id)
        assert inbox is not None and inbox.status == InboxStatus.pending   # nothing committed by the loser
        message_id = inbox.message_id
    assert _replies(engine, message_id) == []
    intruder.release_all()                 # the new holder lets go (as if it had run the turn) ...
    client.portal.call(worker.kick, cid)  # type: ignore[union-attr]
    client.portal.call(worker.idle)  # type: ignore[union-attr]
    assert _replies(engine, message_id) == ["echo: who answers this one"]   # ... the turn runs once


def test_a_web_chat_request_gets_the_reply_of_a_turn_run_in_another_process_with_redis_away(
        engine: Engine, make_client: Callable[..., TestClient]) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"     # nothing listens: hints are lost
    front = make_client(FakeRasa(), redis_url=dead_redis, reply_poll_s=0.2, inbox_sweep_interval_s=0)
    back = make_client(FakeRasa(), redis_url=dead_redis, inbox_sweep_interval_s=0)
    back_worker = back.app.state.concierge.worker  # type: ignore[attr-defined]
    sid = front.post("/api/webchat/sessions").json()["session_id"]
    with Session(engine) as s:
        cid = conversations.get_by_session_token(s, sid).id
    assert back_worker.leases.acquire(cid)   # the other process is busy with this conversation

    def back_runs_it() -> None:
        time.sleep(0.5)
        back.portal.call(back_worker.kick, cid)  # type: ignore[union-attr]

    runner = threading.Thread(target=back_runs_it)
    runner.start()
    res = front.post("/api/webchat/messages", json={"text": "answered elsewhere"}, headers={"X-Chat-Session": sid})
    runner.join()
    body = res.json()
    assert res.status_code == 200 and body["pending"] is False
    assert [m["text"] for m in body["messages"]] == ["echo: answered elsewhere"]
    with Session(engine) as s:
        msg = s.query(Message).filter(Message.conversation_id == cid, Message.direction == "in").one()
        assert s.query(InboxItem).filter(InboxItem.message_id == msg.id).one().attempts == 1


def test_a_message_kicked_while_the_holder_lets_go_is_not_left_for_the_sweeper(
        engine: Engine, make_client: Callable[..., TestClient]) -> None:
    # The race seen in a benchmark: the drain's last check for pending rows ran just before the next
    # message committed; that message's kick only marked the conversation dirty (its drain was still
    # running) and the drain ended, so the message waited for the sweeper (10 s) — here, for ever.
    # The last turn lets go of the lease in its own last step (LeaseStore.let_go): the message arrives
    # right after that step committed, while the drain task is still there.
    client = make_client(FakeRasa(), inbox_sweep_interval_s=0)
    worker = client.app.state.concierge.worker  # type: ignore[attr-defined]
    cid, _first = _webchat_message(engine, "first of two")
    real_process = worker.processor.process
    late: list[int] = []
    let_go: list[bool] = []

    async def process_then_a_message_arrives(inbox_id: str, *, last: bool = False) -> Any:
        result = await real_process(inbox_id, last=last)
        if not late:
            let_go.append(result.let_go and not result.more_pending)  # let go, nothing pending when it looked ...
            with unit_of_work(make_session_factory(engine)) as s:   # ... then the web chat stores one
                conv = s.get(Conversation, cid)
                assert conv is not None
                late.append(conversations.persist_inbound(s, conv, text="second of two",
                                                          now=datetime.now(UTC)).message.id)
            worker.kick(cid)  # and kicks, as it does (the drain task is still running)
        return result

    worker.processor.process = process_then_a_message_arrives
    client.portal.call(worker.kick, cid)  # type: ignore[union-attr]
    client.portal.call(worker.idle)  # type: ignore[union-attr]
    assert late, "the second message was not stored"
    assert let_go == [True]
    assert _replies(engine, late[0]) == ["echo: second of two"]


def test_letting_go_in_the_last_step_sees_a_message_whose_kick_found_the_lease_taken(engine: Engine) -> None:
    holder, kicker = _store(engine, "holder"), _store(engine, "kicker")
    cid, own_inbox = _webchat_message(engine, "the turn that lets go")
    assert holder.acquire(cid)
    with Session(engine) as s:  # nothing else pending: the lease goes with the step's commit
        assert holder.let_go(s, cid, own_inbox) is False
        s.commit()
    assert kicker.acquire(cid)  # free again
    kicker.release_all()
    assert holder.acquire(cid)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as s:  # another process stores a message; its kick finds the lease taken
        conv = s.get(Conversation, cid)
        assert conv is not None
        conversations.persist_inbound(s, conv, text="stored meanwhile", now=datetime.now(UTC))
    assert not kicker.acquire(cid)
    with Session(engine) as s:
        assert holder.let_go(s, cid, own_inbox) is True  # ... so the holder, letting go, sees it
        s.commit()
    assert kicker.acquire(cid)
    with Session(engine) as s, pytest.raises(LeaseLost):  # not ours any more: the step rolls back
        holder.let_go(s, cid, own_inbox)
    with engine.begin() as conn:  # nothing left pending for the apps of later tests to take up
        conn.execute(text("UPDATE inbox SET status = 'done' WHERE conversation_id = :c"), {"c": cid})
    kicker.release_all()


def test_a_web_chat_turn_takes_and_lets_go_of_the_lease_inside_its_own_two_transactions(
        engine: Engine, make_client: Callable[..., TestClient]) -> None:
    client = make_client(FakeRasa(), inbox_sweep_interval_s=0)
    worker = client.app.state.concierge.worker  # type: ignore[attr-defined]
    acquired: list[str] = []
    real_acquire = worker.leases.acquire

    def counting_acquire(conversation_id: str) -> bool:
        acquired.append(conversation_id)
        return bool(real_acquire(conversation_id))

    worker.leases.acquire = counting_acquire
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    for text_ in ("is the label updated?", "and the leaflet?"):
        r = client.post("/api/webchat/messages", json={"text": text_}, headers={"X-Chat-Session": sid})
        assert [m["text"] for m in r.json()["messages"]] == [f"echo: {text_}"]
    with Session(engine) as s:
        conv = conversations.get_by_session_token(s, sid)
        lease = s.execute(text("SELECT holder FROM conversation_lease WHERE conversation_id = :c"),
                          {"c": conv.id}).first()
    # taken as each message was stored (screened on receipt), let go of by each turn's last step
    assert acquired == [] and lease is None


def test_a_message_screened_while_another_process_holds_the_lease_is_run_from_the_database(
        engine: Engine, make_client: Callable[..., TestClient]) -> None:
    # Screened on receipt, but the lease belonged to another process then: that process may run the turn
    # first, so this one must not keep the outcome in memory (it would ask Rasa again for a finished turn).
    rasa = FakeRasa()
    client = make_client(rasa, inbox_sweep_interval_s=0, rasa_timeout=1.0, reply_wait_margin_s=0.5)
    worker = client.app.state.concierge.worker  # type: ignore[attr-defined]
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    with Session(engine) as s:
        cid = conversations.get_by_session_token(s, sid).id
    other = _store(engine, "other")
    assert other.acquire(cid)
    r = client.post("/api/webchat/messages", json={"text": "stored while the lease is elsewhere"},
                    headers={"X-Chat-Session": sid})
    assert r.json()["pending"] is True  # its turn waits for the holder
    assert worker.processor._prescreened == {}  # not kept: the database has the outcome
    with Session(engine) as s:
        row = s.execute(select(InboxItem).where(InboxItem.conversation_id == cid)).scalar_one()
        assert row.status == InboxStatus.pending and row.screened_at is not None
    assert other.release_and_check(cid)  # the holder lets go and sees it; here this process takes it up
    client.portal.call(worker.kick, cid)  # type: ignore[union-attr]
    client.portal.call(worker.idle)  # type: ignore[union-attr]
    with Session(engine) as s:
        row = s.execute(select(InboxItem).where(InboxItem.conversation_id == cid)).scalar_one()
        assert row.status == InboxStatus.done and row.attempts == 1
    assert [c["message"] for c in rasa.calls] == ["stored while the lease is elsewhere"]
