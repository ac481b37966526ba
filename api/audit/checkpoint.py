"""Signed checkpoints of the audit chain's head, kept outside the database.

A checkpoint is a small JSON file: the head's sequence number and hash, when it was taken and the
id of the chain key, signed with an HMAC under that key. Files are created exclusively and made
read-only; point ``CONCIERGE_AUDIT_CHECKPOINT_DIR`` at write-once storage (an object-lock bucket
mounted read-write-once, a WORM share) or ship the files elsewhere. ``concierge audit verify``
then checks that the chain still holds, unchanged, the record each checkpoint names: rewriting the
database, even as "unkeyed" records, cannot match a checkpoint it did not sign.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent, AuditHead
from api.audit.service import chain_pending, key_id


class CheckpointTampered(Exception):
    """A checkpoint file whose signature does not hold (edited, or signed with another key)."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    key_id: str
    taken_at: str

    def payload(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    def signature(self, key: bytes) -> str:
        return hmac.new(key, b"concierge-audit-checkpoint\0" + self.payload(), hashlib.sha256).hexdigest()


def write(session: Session, key: bytes, directory: Path, now: datetime) -> Path | None:
    """A checkpoint of the current head into ``directory``; None when the chain is empty or the
    head is already checkpointed."""
    chain_pending(session)  # this transaction's own events too
    head = session.get(AuditHead, 1)
    if head is None or head.seq == 0:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.glob(f"checkpoint-{head.seq:012d}-*.json")):
        return None
    cp = Checkpoint(seq=head.seq, hash=head.last_hash, key_id=key_id(key), taken_at=now.isoformat())
    path = directory / f"checkpoint-{head.seq:012d}-{now.strftime('%Y%m%dT%H%M%S')}.json"
    # Written whole under a temporary name, then linked into place: a reader (audit verify, the app's
    # next run) never sees a half-written checkpoint, and an existing one is never overwritten.
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({**asdict(cp), "signature": cp.signature(key)}, f, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def latest(directory: Path, key: bytes) -> tuple[Checkpoint, Path] | None:
    """The checkpoint with the highest sequence number; raises ``CheckpointTampered`` if any
    checkpoint's signature fails (a forged or edited file is itself evidence)."""
    best: tuple[Checkpoint, Path] | None = None
    for path in sorted(directory.glob("checkpoint-*.json")) if directory.is_dir() else []:
        try:
            raw = json.loads(path.read_text())
            cp = Checkpoint(seq=int(raw["seq"]), hash=str(raw["hash"]), key_id=str(raw["key_id"]),
                            taken_at=str(raw["taken_at"]))
            signature = str(raw["signature"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointTampered(f"{path.name}: unreadable ({exc})") from exc
        if not hmac.compare_digest(cp.signature(key), signature):
            raise CheckpointTampered(f"{path.name}: signature does not match (edited, or another key)")
        if best is None or cp.seq > best[0].seq:
            best = (cp, path)
    return best


def check(session: Session, cp: Checkpoint) -> str | None:
    """None when the chain still holds the checkpointed record unchanged; else what is wrong."""
    found = session.execute(select(AuditEvent.hash).where(AuditEvent.seq == cp.seq)).scalar_one_or_none()
    if found is None:
        return f"record {cp.seq} named by the checkpoint of {cp.taken_at} is gone"
    if not hmac.compare_digest(found, cp.hash):
        return f"record {cp.seq} differs from the checkpoint of {cp.taken_at} (the chain was rewritten)"
    return None
