"""Concurrent writers on a fresh database keep one unbroken chain."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.audit.models import AuditEvent
from api.db import make_session_factory, unit_of_work


def test_concurrent_audit_writers_never_fork_the_chain(engine: Engine) -> None:
    factory = make_session_factory(engine)

    def write(i: int) -> None:
        with unit_of_work(factory) as s:
            audit.record(s, action="concurrency.test", subject_type="test", subject_id=str(i))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(40)))
    with Session(engine) as s:
        n = s.execute(select(func.count()).select_from(AuditEvent)
                      .where(AuditEvent.action == "concurrency.test")).scalar_one()
        assert n == 40
        assert audit.verify(s).ok
