"""Append-only, keyed hash chain.

Each record's hash is an HMAC-SHA256, under a key kept outside the database, of its content and
the previous record's hash: a changed, deleted or reordered record breaks the chain from that point
on, and somebody with write access to the database but not the key cannot recompute it. Writers
take the chain head with an UPDATE first, which serialises them on every backend.

Records written before the chain was keyed (``key_id`` NULL) were plain SHA-256; they are verified
as such, but only before the first keyed record — an unkeyed record after it is tampering. Signed
checkpoints of the head, written outside the database (``api.audit.checkpoint``), anchor the
whole chain, the unkeyed start included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, select, update
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from api.audit.models import AuditEvent, AuditHead
from api.clock import utcnow

if TYPE_CHECKING:
    from api.settings import Settings

log = logging.getLogger("concierge.audit")

GENESIS = "0" * 64

_key_lock = threading.Lock()
_key: list[bytes] = []


def key_id(key: bytes) -> str:
    """Names a key without revealing it (stored with each record it signed)."""
    return hashlib.sha256(b"concierge-audit-key\0" + key).hexdigest()[:16]


def load_key(configured: str, key_file: Path) -> bytes:
    """The chain's key: ``configured`` (CONCIERGE_AUDIT_KEY) if set, else the key file, created with a
    random key the first time (mode 0600)."""
    if configured:
        return configured.encode()
    try:
        return key_file.read_text().strip().encode()
    except FileNotFoundError:
        pass
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_hex(32)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return key_file.read_text().strip().encode()
    with os.fdopen(fd, "w") as f:
        f.write(fresh + "\n")
    log.warning("created the audit key %s: back it up and keep it away from the database", key_file)
    return fresh.encode()


def configure(key: bytes) -> None:
    """Set this process's chain key (each entry point does, from its settings)."""
    if not key:
        raise ValueError("the audit key is empty")
    with _key_lock:
        _key[:] = [key]


def configure_from(settings: Settings) -> bytes:
    """The key the settings name (CONCIERGE_AUDIT_KEY, else the key file), installed for this process."""
    key = load_key(settings.audit_key.get_secret_value(), settings.resolved_audit_key_file)
    configure(key)
    return key


def current_key() -> bytes:
    with _key_lock:
        if _key:
            return _key[0]
    # An entry point that did not configure one (a script): the same resolution from the environment.
    from api.settings import Settings

    return configure_from(Settings())


def _digest(key: bytes | None, prev_hash: str, seq: int, at: datetime, actor_type: str, actor_id: str | None,
            action: str, subject_type: str, subject_id: str | None, data: dict[str, Any]) -> str:
    payload = json.dumps(
        [prev_hash, seq, at.isoformat(timespec="microseconds"), actor_type, actor_id, action,
         subject_type, subject_id, data],
        sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str,
    ).encode()
    if key is None:  # records from before the chain was keyed
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def record(
    session: Session,
    *,
    action: str,
    subject_type: str,
    subject_id: str | None,
    actor_type: str = "system",
    actor_id: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one audit event to the caller's transaction: it commits with it, or not at all.

    The event waits in the session until the transaction commits; then all of the transaction's events
    are chained at once (``chain_pending``, run by ``before_commit``): one UPDATE … RETURNING takes the
    chain head (its row lock — the write lock on SQLite — is held only while the commit completes), the
    events are hashed in memory in the order they were recorded, and they go to the database in one
    batched INSERT with one UPDATE of the head. So the head, which every writer of every process queues
    for, is the last lock a transaction takes and is held for the commit only — not from the first
    record to the end of the transaction. A savepoint rolled back takes the events recorded inside it
    with it (``_drop_rolled_back``). The returned event has its ``seq`` and ``hash`` once chained."""
    at = at or utcnow()
    if not session.in_transaction():
        session.begin()  # what the first statement would do: the events belong to this transaction
    event = AuditEvent(at=at, actor_type=actor_type, actor_id=actor_id, action=action, subject_type=subject_type,
                       subject_id=subject_id, data=json.loads(json.dumps(data or {}, default=str)))
    session.info.setdefault(PENDING_KEY, []).append(event)
    return event


def chain_pending(session: Session) -> None:
    """Chain the transaction's waiting events onto the head and add them to the session (flushed with
    the session's next flush). Taken once per transaction; later calls chain on in memory."""
    pending: list[AuditEvent] | None = session.info.pop(PENDING_KEY, None)
    if not pending:
        return
    key = current_key()
    kid = key_id(key)
    head: AuditHead | None = session.info.get(HEAD_KEY)
    if head is None:
        head = session.execute(
            update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + len(pending))
            .returning(AuditHead).execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if head is None:  # a database without the seeded head row (migration 0006 seeds it)
            head = AuditHead(id=1, seq=len(pending), last_hash=GENESIS)
            session.add(head)
            session.flush([head])
        base = head.seq - len(pending)
        session.info[HEAD_KEY] = head
    else:  # chained earlier in this transaction: the head's row is ours until it ends
        base = head.seq
        head.seq += len(pending)
    prev = head.last_hash
    for i, ev in enumerate(pending, start=1):
        ev.seq = base + i
        ev.prev_hash = prev
        ev.key_id = kid
        ev.hash = prev = _digest(key, prev, ev.seq, ev.at, ev.actor_type, ev.actor_id, ev.action,
                                 ev.subject_type, ev.subject_id, ev.data)
    head.last_hash = prev
    session.add_all(pending)


# session.info keys: the chain head this session's transaction holds, the events waiting for the commit,
# and per open savepoint how many events were waiting when it began.
HEAD_KEY = "audit_head"
PENDING_KEY = "audit_pending"
MARKS_KEY = "audit_savepoints"


@event.listens_for(Session, "before_commit")
def _chain_at_commit(session: Session) -> None:
    chain_pending(session)


@event.listens_for(Session, "do_orm_execute")
def _chain_before_reading(state: ORMExecuteState) -> None:
    """A query on the audit log sees the events its own transaction recorded (read your writes): the
    waiting ones are chained before it runs. (~10 µs per ORM statement for the listener itself.)"""
    if state.session.info.get(PENDING_KEY) and state.is_select \
            and any(m.class_ is AuditEvent for m in state.all_mappers):
        chain_pending(state.session)


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info.setdefault(MARKS_KEY, {})[transaction] = len(session.info.get(PENDING_KEY, ()))


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    # (after ``after_transaction_end``, which does not tell a rollback from a release; a whole transaction's
    # events already went with it there)
    marks = session.info.get(MARKS_KEY, {})
    if previous_transaction.nested and previous_transaction in marks:
        del session.info.setdefault(PENDING_KEY, [])[marks.pop(previous_transaction):]


@event.listens_for(Session, "after_transaction_end")
def _forget_head(session: Session, transaction: SessionTransaction) -> None:
    # The end of the transaction (commit or rollback) or of a savepoint, released or rolled back (a rolled
    # back one takes its lock and its records with it) — not the inner step each flush runs in.
    if transaction.nested or transaction.parent is None:
        session.info.pop(HEAD_KEY, None)
    if transaction.parent is None:  # a released savepoint's mark goes with its transaction
        session.info.pop(MARKS_KEY, None)
        session.info.pop(PENDING_KEY, None)


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""
    unkeyed: int = 0  # records from before the chain was keyed (verified as plain SHA-256)
    head_seq: int = 0
    head_hash: str = GENESIS


def verify(session: Session, key: bytes | None = None) -> VerifyResult:
    """Walk the chain in sequence order up to the head read first (writers may go on meanwhile);
    report the first record that breaks it."""
    key = key or current_key()
    kid = key_id(key)
    chain_pending(session)  # this transaction's own events too
    head = session.get(AuditHead, 1)
    limit = head.seq if head is not None else 0
    prev = GENESIS
    expected_seq = 1
    checked = unkeyed = 0
    keyed_seen = False
    rows = session.execute(select(AuditEvent).where(AuditEvent.seq <= limit).order_by(AuditEvent.seq)).scalars()
    for ev in rows:
        problem = ""
        if ev.seq != expected_seq:
            problem = f"gap: expected seq {expected_seq}, found {ev.seq}"
        elif ev.prev_hash != prev:
            problem = "previous-hash link broken (deleted or reordered)"
        elif ev.key_id is None and keyed_seen:
            problem = "an unkeyed record after keyed ones (rewritten without the key)"
        elif ev.key_id is not None and ev.key_id != kid:
            problem = f"signed with another key ({ev.key_id}, this one is {kid})"
        if problem:
            return VerifyResult(False, checked, ev.seq, problem, unkeyed, limit)
        if ev.key_id is None:
            digest = _digest(None, prev, ev.seq, ev.at, ev.actor_type, ev.actor_id, ev.action,
                             ev.subject_type, ev.subject_id, ev.data)
            unkeyed += 1
        else:
            keyed_seen = True
            digest = _digest(key, prev, ev.seq, ev.at, ev.actor_type, ev.actor_id, ev.action,
                             ev.subject_type, ev.subject_id, ev.data)
        if not hmac.compare_digest(digest, ev.hash):
            return VerifyResult(False, checked, ev.seq, "content changed", unkeyed, limit)
        prev = ev.hash
        expected_seq += 1
        checked += 1
    if checked != limit:
        return VerifyResult(False, checked, None, f"chain tip missing: the head says {limit} records, found {checked}",
                            unkeyed, limit)
    if head is not None and head.last_hash != prev:
        return VerifyResult(False, checked, None, "chain tip does not match head (records removed at the end)",
                            unkeyed, limit)
    return VerifyResult(True, checked, unkeyed=unkeyed, head_seq=limit, head_hash=prev)
