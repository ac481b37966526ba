"""Conversation leases: one process at a time runs a conversation's turns (PostgreSQL).

Several api and worker processes share one database. Any of them may be kicked for any
conversation (the message was posted to it); the one that holds the conversation's lease runs its
pending turns, in message order, and the others leave them to it.

- ``acquire``: one upsert — take the row when there is none, when it has expired, or when it is
  already ours. Expiry is judged by the database clock (``now()``), so a process whose clock is off
  neither steals a live lease nor keeps a dead one.
- ``fence``: the last statement of every turn step's transaction, just before COMMIT. It renews the
  lease only if we still hold it and keeps the row locked until the commit, so no other process can
  take the lease over while a step commits; a step of a holder that lost its lease (it was stalled
  longer than the lease) rolls back as a whole (``LeaseLost``) — a turn is done once. A step that
  waits on a lock (the audit chain's head, under load) does not hold the lease row meanwhile, so the
  heartbeat keeps renewing it.
- ``heartbeat``: every third of the lease time, one UPDATE renews every lease this process holds
  (a Rasa call between two steps may take seconds). It runs on a thread of its own: turn steps queued
  for the shared thread pool under load must not let the leases of their own process expire.
- ``release_and_check``: let go, then — in a later statement, so with a later snapshot — look for
  pending messages. A kick that found the lease taken came after its message was committed, and
  before this release: this check sees that message, so the caller takes the lease again.
  No kick is lost, and none needs to reach the holder.
- ``let_go``: the same, inside the last step of a drain's last turn, in place of its ``fence`` (a DELETE
  that must find our row, then the pending check): the usual web chat turn lets go without a
  transaction of its own. ``release_and_check`` remains for a drain that ends otherwise.
- ``acquire_in``: ``acquire`` inside the transaction that stores a web chat message and screens it on
  receipt (api/pipeline/turn.py ``screen_on_receipt``): the drain then starts holding the lease. So the
  usual web chat turn is two transactions in all — store + screen + take the lease; replies + let go.
- ``orphans``: conversations with pending messages and no live lease (its holder died, was
  SIGKILLed, or lost the database): the sweeper kicks them in whichever process runs it.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any, NoReturn

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from api.pipeline.turn import LeaseLost

__all__ = ["LeaseLost", "LeaseStore", "holder_identity"]

log = logging.getLogger("concierge.lease")


def holder_identity() -> str:
    """This process, as a lease holder: host, pid and a random part (a pid is reused)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


# ``before``: the row as it was when the statement started (a takeover of an expired lease is logged).
_ACQUIRE = text("""
WITH before AS (SELECT holder, now() - expires_at AS overdue FROM conversation_lease WHERE conversation_id = :cid)
INSERT INTO conversation_lease (conversation_id, holder, acquired_at, expires_at)
VALUES (:cid, :holder, now(), now() + make_interval(secs => :ttl))
ON CONFLICT (conversation_id) DO UPDATE
   SET holder = EXCLUDED.holder, acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
 WHERE conversation_lease.expires_at <= now() OR conversation_lease.holder = EXCLUDED.holder
RETURNING (SELECT holder FROM before), (SELECT overdue FROM before)
""")
_FENCE = text("""
UPDATE conversation_lease SET expires_at = clock_timestamp() + make_interval(secs => :ttl)
 WHERE conversation_id = :cid AND holder = :holder
RETURNING conversation_id
""")
# SKIP LOCKED: a lease row locked by a commit (its fence renews it) or by an acquire attempt of another
# process must not hold up the renewal of all the others; it is renewed on the next beat.
_HEARTBEAT = text("""
UPDATE conversation_lease SET expires_at = clock_timestamp() + make_interval(secs => :ttl)
 WHERE conversation_id IN (SELECT conversation_id FROM conversation_lease WHERE holder = :holder
                           FOR UPDATE SKIP LOCKED)
""")
_RELEASE = text("DELETE FROM conversation_lease WHERE conversation_id = :cid AND holder = :holder")
_LET_GO = text("DELETE FROM conversation_lease WHERE conversation_id = :cid AND holder = :holder "
               "RETURNING conversation_id")
# The turn letting go has marked its own row done in the same transaction, but not yet flushed it.
_PENDING_OTHER = text("SELECT EXISTS (SELECT 1 FROM inbox WHERE conversation_id = :cid AND status = 'pending' "
                      "AND id <> :inbox)")
_PENDING = text("SELECT EXISTS (SELECT 1 FROM inbox WHERE conversation_id = :cid AND status = 'pending')")
# Pending work whose lease is missing, expired, or (a turn of ours was interrupted) our own.
_ORPHANS = text("""
SELECT DISTINCT i.conversation_id, l.conversation_id IS NULL AS unleased
  FROM inbox i
  JOIN conversation c ON c.id = i.conversation_id
  LEFT JOIN conversation_lease l ON l.conversation_id = i.conversation_id
 WHERE i.status = 'pending'
   AND (l.conversation_id IS NULL OR l.expires_at <= now() OR l.holder = :holder)
   AND (CAST(:channels AS text[]) IS NULL OR c.channel = ANY(CAST(:channels AS text[])))
   AND NOT (c.channel = ANY(CAST(:skip AS text[])))
""")
# Expired leases of conversations with nothing pending (a holder died after its last turn, or the
# conversation was deleted): nobody will take them again, so they are dropped.
_FORGET = text("""
DELETE FROM conversation_lease l
 WHERE l.expires_at <= now()
   AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.conversation_id = l.conversation_id AND i.status = 'pending')
""")


class LeaseStore:
    """The lease statements, for one holder (this process) on one PostgreSQL engine."""

    def __init__(self, engine: Engine, *, lease_s: float, holder: str | None = None) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("conversation leases need PostgreSQL (SQLite runs one process per database)")
        self.engine = engine
        self.lease_s = float(lease_s)
        self.holder = holder or holder_identity()
        # The heartbeat's own connection: a pool busy with requests and turns waiting on locks must
        # not keep this process's leases from being renewed.
        self._beat_engine = create_engine(engine.url, pool_size=1, max_overflow=1, pool_pre_ping=True,
                                          hide_parameters=True)

    def acquire(self, conversation_id: str) -> bool:
        """Take (or keep) the lease; False when a live lease belongs to another process."""
        with self.engine.begin() as conn:
            row = conn.execute(_ACQUIRE, {"cid": conversation_id, "holder": self.holder,
                                          "ttl": self.lease_s}).first()
        return self._taken(conversation_id, row)

    def acquire_in(self, session: Session, conversation_id: str) -> bool:
        """``acquire`` in the caller's transaction (the web chat's, storing a message it screens): the
        lease is ours once that commits, and the drain that runs the turn need not take it."""
        row = session.execute(_ACQUIRE, {"cid": conversation_id, "holder": self.holder,
                                         "ttl": self.lease_s}).first()
        return self._taken(conversation_id, row)

    def _taken(self, conversation_id: str, row: Any) -> bool:
        if row is None:
            return False
        previous, overdue = row
        if previous is not None and previous != self.holder:
            log.warning("conversation %s: took over the lease of %s, expired %.1fs ago", conversation_id, previous,
                     overdue.total_seconds() if overdue is not None else float("nan"))
        return True

    def fence(self, session: Session, conversation_id: str) -> None:
        """In a turn step's transaction, before it writes: still ours (renewed, and locked until that
        transaction ends), or ``LeaseLost``."""
        row = session.execute(_FENCE, {"cid": conversation_id, "holder": self.holder,
                                       "ttl": self.lease_s}).first()
        if row is None:
            self._lost(session, conversation_id)

    def let_go(self, session: Session, conversation_id: str, inbox_id: str) -> bool:
        """The fence of a drain's last turn step, which also lets go: in that step's transaction, just before
        COMMIT, the lease is deleted if still ours (else ``LeaseLost``: the step rolls back as a whole) and
        then — in a later statement, so with a later snapshot — pending messages other than the turn's own
        are looked for; True if there are (the caller takes the lease again). Saves the drain its
        ``release_and_check`` transaction. A kick that found the lease ours before the DELETE left its
        message (committed before that kick) to us: the check sees it. One that comes after waits on the
        deleted row until this commits, then takes the lease itself."""
        if session.execute(_LET_GO, {"cid": conversation_id, "holder": self.holder}).first() is None:
            self._lost(session, conversation_id)
        return bool(session.execute(_PENDING_OTHER, {"cid": conversation_id, "inbox": inbox_id}).scalar())

    def _lost(self, session: Session, conversation_id: str) -> NoReturn:
        now = session.execute(text("SELECT holder, expires_at - clock_timestamp() FROM conversation_lease "
                                   "WHERE conversation_id = :cid"), {"cid": conversation_id}).first()
        held = "nobody" if now is None else f"{now[0]} (for {now[1].total_seconds():.1f}s more)"
        raise LeaseLost(f"conversation {conversation_id}: this process ({self.holder}) lost the lease; "
                        f"held by {held}")

    def heartbeat(self) -> int:
        """Renew every lease this process holds; returns how many."""
        with self._beat_engine.begin() as conn:
            return int(conn.execute(_HEARTBEAT, {"holder": self.holder, "ttl": self.lease_s}).rowcount)

    def close(self) -> None:
        self._beat_engine.dispose()

    def release_and_check(self, conversation_id: str) -> bool:
        """Let go of the lease; True if the conversation has pending messages (looked up after the
        release, so one whose kick found the lease still ours is seen)."""
        with self.engine.begin() as conn:
            # READ COMMITTED: the second statement reads a snapshot taken after the DELETE got the
            # row, i.e. after any acquire that saw our lease (and the message committed before it).
            conn.execute(_RELEASE, {"cid": conversation_id, "holder": self.holder})
            return bool(conn.execute(_PENDING, {"cid": conversation_id}).scalar())

    def release_all(self) -> int:
        """Let go of every lease this process holds (shutdown: the others take over at once)."""
        with self.engine.begin() as conn:
            return int(conn.execute(text("DELETE FROM conversation_lease WHERE holder = :holder"),
                                    {"holder": self.holder}).rowcount)

    def orphans(self, channels: Sequence[str] = (), skip_channels: Sequence[str] = ()) -> list[tuple[str, bool]]:
        """Conversations with pending messages nobody (alive) holds, each with whether it has no lease
        row at all (rather than an expired one, or one of ours); drops stale leases first."""
        with self.engine.begin() as conn:
            conn.execute(_FORGET)
            rows = conn.execute(_ORPHANS, {"holder": self.holder, "channels": list(channels) or None,
                                           "skip": list(skip_channels)}).all()
            return [(str(r[0]), bool(r[1])) for r in rows]
