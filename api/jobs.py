"""Background jobs that several api processes share a database for: one run at a time.

Every api process runs the same periodic jobs (CX rollups, SLA alerts, auto-assignment, audit
checkpoints). Each is safe to repeat, but two processes running one at the same moment do the work
twice and race on the rows it writes (two SLA sweeps both find a breach not yet alerted; one of their
inserts fails on the unique constraint). On PostgreSQL a run first takes a session-level advisory lock
named after the job, without waiting: the process that gets it runs the job, the others skip this
round. The lock goes with the connection, so a process that dies mid-run frees it at once. On SQLite
(one process per database) the job simply runs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine, text

log = logging.getLogger("concierge.jobs")

T = TypeVar("T")


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a job name (the same in every process)."""
    return int.from_bytes(hashlib.sha256(f"concierge-job:{name}".encode()).digest()[:8], "big", signed=True)


def one_at_a_time(engine: Engine | None, name: str, job: Callable[[], T]) -> Callable[[], T | None]:
    """``job``, run only when no other process is running the job of this name (None when skipped)."""
    if engine is None or engine.dialect.name != "postgresql":
        return job
    key = lock_key(name)

    def run() -> T | None:
        with engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.rollback()
                log.debug("%s: another process is running it; skipped this round", name)
                return None
            conn.commit()  # the lock is the session's, not the transaction's: nothing left open meanwhile
            try:
                return job()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    return run
