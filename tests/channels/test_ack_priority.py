"""Webhook acks do not queue behind turn and outbox work for SQLite's write lock
(``api.sqlite_writes``): while an ack waits, background work does not take the lock; a cap lets
background work advance under a flood of acks; re-entrant per thread; never a deadlock (timeout)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from api import sqlite_writes as writes
from api.db import make_engine
from api.sqlite_writes import WriteQueue


def _start(target: object, name: str) -> threading.Thread:
    t = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
    t.start()
    return t


def _queued(q: WriteQueue, n: int) -> None:
    deadline = time.monotonic() + 5
    while q._urgent_waiting + q._background_waiting < n:
        assert time.monotonic() < deadline, "waiters did not queue"
        time.sleep(0.001)


def test_a_priority_waiter_goes_before_background_waiters_that_came_first() -> None:
    q = WriteQueue()
    order: list[str] = []
    assert q.acquire()  # a turn's transaction holds the lock

    def background(name: str) -> None:
        assert q.acquire()
        order.append(name)
        q.release()

    def ack() -> None:
        with writes.priority():
            assert q.acquire()
        order.append("ack")
        q.release()

    threads = [_start(lambda: background("bg1"), "bg1")]
    _queued(q, 1)
    threads.append(_start(lambda: background("bg2"), "bg2"))
    _queued(q, 2)
    threads.append(_start(ack, "ack"))
    _queued(q, 3)
    q.release()
    for t in threads:
        t.join(5)
    assert order[0] == "ack" and sorted(order[1:]) == ["bg1", "bg2"]


def test_background_work_gets_a_turn_after_burst_priority_grants() -> None:
    q = WriteQueue(burst=2)
    order: list[str] = []
    assert q.acquire()

    def waiter(name: str, urgent: bool) -> None:
        if urgent:
            with writes.priority():
                assert q.acquire()
        else:
            assert q.acquire()
        order.append(name)
        q.release()

    threads = [_start(lambda: waiter("bg", False), "bg")]
    _queued(q, 1)
    for i in range(4):
        threads.append(_start(lambda i=i: waiter(f"ack{i}", True), f"ack{i}"))
        _queued(q, 2 + i)
    q.release()
    for t in threads:
        t.join(5)
    assert [name.rstrip("0123") for name in order] == ["ack", "ack", "bg", "ack", "ack"]


def test_the_holder_can_take_a_second_connection_without_waiting_for_itself() -> None:
    q = WriteQueue(timeout=1)
    assert q.acquire()
    started = time.monotonic()
    assert q.acquire()
    assert time.monotonic() - started < 0.5
    q.release()
    q.release()
    assert q._owner is None


def test_a_waiter_that_times_out_goes_ahead_unqueued_and_leaves_no_trace() -> None:
    q = WriteQueue(timeout=0.1)
    assert q.acquire()
    result: list[bool] = []
    t = _start(lambda: result.append(q.acquire()), "late")
    t.join(5)
    assert result == [False]
    assert q._urgent_waiting == 0 and q._background_waiting == 0
    q.release()
    assert q.acquire()  # the lock is free again: nobody was left holding it
    q.release()


def test_on_a_sqlite_engine_the_ack_commits_before_the_waiting_turns(tmp_path: Path) -> None:
    """Real connections: while one background transaction holds the lock, five more wait; an ack
    arriving last commits right after the holder, not after the five."""
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE log (who TEXT)"))
    release_holder = threading.Event()
    queued = threading.Semaphore(0)
    real_acquire = WriteQueue.acquire

    def write(who: str, hold: threading.Event | None = None) -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO log VALUES (:w)"), {"w": who})
            if hold is not None:
                hold.wait(5)

    def counting_acquire(self: WriteQueue) -> bool:
        queued.release()
        return real_acquire(self)

    WriteQueue.acquire = counting_acquire  # type: ignore[method-assign]
    try:
        threads = [_start(lambda: write("holder", release_holder), "holder")]
        queued.acquire(timeout=5)
        time.sleep(0.05)
        for i in range(5):
            threads.append(_start(lambda i=i: write(f"turn{i}"), f"turn{i}"))
            queued.acquire(timeout=5)
        time.sleep(0.05)

        def ack() -> None:
            with writes.priority():
                write("ack")

        threads.append(_start(ack, "ack"))
        queued.acquire(timeout=5)
        time.sleep(0.05)
        release_holder.set()
        for t in threads:
            t.join(10)
    finally:
        WriteQueue.acquire = real_acquire  # type: ignore[method-assign]
    with engine.connect() as conn:
        order = [r[0] for r in conn.execute(text("SELECT who FROM log ORDER BY rowid"))]
    engine.dispose()
    assert order[:2] == ["holder", "ack"], order
    assert sorted(order[2:]) == [f"turn{i}" for i in range(5)]
