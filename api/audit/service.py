"""Append-only, hash-chained audit log.

Each record's hash covers its content and the previous record's hash, so a changed,
deleted or reordered record breaks the chain from that point on. Writers take the
chain head with an UPDATE first, which serialises them on every backend.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent, AuditHead
from api.clock import utcnow

GENESIS = "0" * 64


def _digest(prev_hash: str, seq: int, at: datetime, actor_type: str, actor_id: str | None,
            action: str, subject_type: str, subject_id: str | None, data: dict[str, Any]) -> str:
    payload = json.dumps(
        [prev_hash, seq, at.isoformat(timespec="microseconds"), actor_type, actor_id, action,
         subject_type, subject_id, data],
        sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


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
    """Append one audit event in the caller's transaction."""
    at = at or utcnow()
    data = json.loads(json.dumps(data or {}, default=str))
    bumped = session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1)
    )
    if bumped.rowcount == 0:  # type: ignore[attr-defined]
        session.add(AuditHead(id=1, seq=1, last_hash=GENESIS))
        session.flush()
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).execution_options(populate_existing=True)
    ).scalar_one()
    seq = head.seq
    digest = _digest(head.last_hash, seq, at, actor_type, actor_id, action, subject_type, subject_id, data)
    event = AuditEvent(
        seq=seq, at=at, actor_type=actor_type, actor_id=actor_id, action=action,
        subject_type=subject_type, subject_id=subject_id, data=data,
        prev_hash=head.last_hash, hash=digest,
    )
    head.last_hash = digest
    session.add(event)
    session.flush()
    return event


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""


def verify(session: Session) -> VerifyResult:
    """Walk the chain in sequence order; report the first record that breaks it."""
    prev = GENESIS
    expected_seq = 1
    checked = 0
    rows = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()
    for ev in rows:
        if ev.seq != expected_seq:
            return VerifyResult(False, checked, ev.seq, f"gap: expected seq {expected_seq}, found {ev.seq}")
        if ev.prev_hash != prev:
            return VerifyResult(False, checked, ev.seq, "previous-hash link broken (deleted or reordered)")
        digest = _digest(prev, ev.seq, ev.at, ev.actor_type, ev.actor_id, ev.action,
                         ev.subject_type, ev.subject_id, ev.data)
        if digest != ev.hash:
            return VerifyResult(False, checked, ev.seq, "content changed")
        prev = ev.hash
        expected_seq += 1
        checked += 1
    head = session.get(AuditHead, 1)
    if head is not None and head.last_hash != prev:
        return VerifyResult(False, checked, None, "chain tip does not match head (records removed at the end)")
    return VerifyResult(True, checked)
