"""SQLite's single write lock, shared out inside this process — inbound acks first.

On SQLite every transaction starts with ``BEGIN IMMEDIATE`` (``api.db``), so a session holds the
database's one write lock from its first statement until it commits. SQLite does not queue the
writers waiting for it: each sleeps in its busy handler (1, 2, 5 … 100 ms) and tries again, so a
writer that arrived just now often beats one that has waited for seconds, and an unlucky one fails
after the 30 s busy timeout. With 200 WhatsApp conversations the webhook ack waited for that lock
behind the turns and the outbox of the same process — p95 2.4 s, max 25–30 s, and a "database is
locked" 500 that lost a message in one run (``benchmarks/RESULTS-whatsapp.md``).

So within the process a connection is used only by the holder of the write turn. A free turn is
taken at once by whoever asks (no hand-over to a sleeping thread: on a busy machine that costs a
scheduler round per transaction), with one exception: while a thread inside ``priority()`` waits —
the webhook persisting an inbound message before it acknowledges it — background work (turns, the
outbox dispatcher) does not take the turn, for at most ``burst`` acks in a row, so a flood of
webhooks cannot stall the turns. Waiters sleep on a condition and are woken when the turn is
released. Holding a turn is re-entrant per thread. A waiter that gets no turn within ``timeout``
goes ahead unqueued and meets SQLite's own busy handler, as without this queue. Other processes on
the same file are not affected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

_local = threading.local()


@contextmanager
def priority() -> Iterator[None]:
    """Connections checked out by this thread inside the block go ahead of background work."""
    previous = getattr(_local, "priority", False)
    _local.priority = True
    try:
        yield
    finally:
        _local.priority = previous


def _has_priority() -> bool:
    return bool(getattr(_local, "priority", False))


@contextmanager
def reading() -> Iterator[None]:
    """Connections checked out by this thread inside the block only read (``api.db.read_only``: a
    deferred BEGIN, beside the writer under WAL): they take no write turn, so a read never waits
    behind a writer that waits for the database."""
    previous = getattr(_local, "reading", False)
    _local.reading = True
    try:
        yield
    finally:
        _local.reading = previous


class WriteQueue:
    def __init__(self, *, burst: int = 8, timeout: float = 30.0) -> None:
        self.burst = burst
        self.timeout = timeout
        self._lock = threading.Lock()
        self._urgent_turn = threading.Condition(self._lock)
        self._background_turn = threading.Condition(self._lock)
        self._owner: int | None = None
        self._depth = 0
        self._urgent_waiting = 0
        self._background_waiting = 0
        self._streak = 0  # priority grants in a row while background work was waiting

    def _may_take(self, urgent: bool) -> bool:
        if self._owner is not None:
            return False
        capped = self._background_waiting > 0 and self._streak >= self.burst
        return not capped if urgent else (self._urgent_waiting == 0 or capped)

    def _wake_next(self) -> None:
        if self._urgent_waiting and not (self._background_waiting and self._streak >= self.burst):
            self._urgent_turn.notify()
        elif self._background_waiting:
            self._background_turn.notify()
        elif self._urgent_waiting:
            self._urgent_turn.notify()

    def acquire(self) -> bool:
        """Wait for the write turn. False when it timed out (the caller goes ahead unqueued).

        A free turn is taken at once by whoever asks (no hand-over to a sleeping thread, which on
        a busy machine costs a scheduler round per transaction), except that background work does
        not take it while an ack is waiting."""
        me = threading.get_ident()
        urgent = _has_priority()
        deadline = time.monotonic() + self.timeout
        with self._lock:
            if self._owner == me:
                self._depth += 1
                return True
            if urgent:
                self._urgent_waiting += 1
            else:
                self._background_waiting += 1
            try:
                while not self._may_take(urgent):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._wake_next()  # in case the turn was offered to us
                        return False
                    (self._urgent_turn if urgent else self._background_turn).wait(remaining)
            finally:
                if urgent:
                    self._urgent_waiting -= 1
                else:
                    self._background_waiting -= 1
            self._owner, self._depth = me, 1
            self._streak = self._streak + 1 if urgent and self._background_waiting else 0
            return True

    def release(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth > 0:
                return
            self._owner, self._depth = None, 0
            self._wake_next()

    def install(self, engine: Engine) -> None:
        """Take a turn when the pool hands out a connection, give it back when it returns (also when
        it returns invalidated)."""
        holding: set[int] = set()  # ids of the pool records whose checkout holds a turn

        @event.listens_for(engine, "checkout")
        def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
            if getattr(_local, "reading", False):
                return
            if self.acquire():
                with self._lock:
                    holding.add(id(record))

        @event.listens_for(engine, "checkin")
        def _checkin(dbapi_conn: Any, record: Any) -> None:
            with self._lock:
                held = id(record) in holding
                holding.discard(id(record))
            if held:
                self.release()
