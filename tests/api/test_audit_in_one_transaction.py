"""Several audit records in one transaction: they wait for the commit, where the chain head is taken
once (the last lock the transaction takes, held only while it commits), the records chain on in
memory and go in together; a rolled-back savepoint takes its records with it, and every end of a
transaction or savepoint forgets the held head."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.audit.models import AuditEvent, AuditHead
from api.db import make_session_factory, new_id, unit_of_work


@contextmanager
def head_updates(engine: Engine) -> Iterator[list[str]]:
    """The UPDATE statements on audit_head sent while inside."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE AUDIT_HEAD"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def _mine(session: Session, tag: str) -> list[AuditEvent]:
    return list(session.execute(select(AuditEvent).where(AuditEvent.subject_id == tag)
                                .order_by(AuditEvent.seq)).scalars())


def test_records_of_one_transaction_follow_each_other_in_the_chain(engine: Engine) -> None:
    factory = make_session_factory(engine)
    tag = new_id()
    with head_updates(engine) as updates, unit_of_work(factory) as s:
        for i in range(4):
            audit.record(s, action="batch.step", subject_type="test", subject_id=tag, data={"step": i})
    # one UPDATE … RETURNING takes the head, one more writes its new tip: not two per record
    assert len(updates) == 2
    with head_updates(engine) as updates, unit_of_work(factory) as s:
        audit.record(s, action="batch.flushed", subject_type="test", subject_id=tag, data={"step": 4})
        s.execute(select(AuditEvent.seq).where(AuditEvent.subject_id == tag)).all()  # flushes what is pending
        audit.record(s, action="batch.flushed", subject_type="test", subject_id=tag, data={"step": 5})
    # a flush between two records does not give the head up: it is taken once per transaction
    assert sum("RETURNING" in u.upper() for u in updates) == 1
    with Session(engine) as s:
        rows = _mine(s, tag)
        assert [r.data["step"] for r in rows] == [0, 1, 2, 3, 4, 5]
        assert [b.seq - a.seq for a, b in pairwise(rows)] == [1, 1, 1, 1, 1]
        assert all(b.prev_hash == a.hash for a, b in pairwise(rows))
        head = s.get(AuditHead, 1)
        assert head is not None and head.seq == rows[-1].seq and head.last_hash == rows[-1].hash
        assert audit.verify(s).ok


def test_a_rolled_back_savepoint_leaves_no_gap_in_the_chain(engine: Engine) -> None:
    factory = make_session_factory(engine)
    tag = new_id()
    with head_updates(engine) as updates, unit_of_work(factory) as s:
        audit.record(s, action="savepoint.before", subject_type="test", subject_id=tag)
        try:
            with s.begin_nested():
                audit.record(s, action="savepoint.inside", subject_type="test", subject_id=tag)
                raise RuntimeError("undo the savepoint")
        except RuntimeError:
            pass
        audit.record(s, action="savepoint.after", subject_type="test", subject_id=tag)
        s.flush()
        assert updates == []  # nothing chained before the commit
    # the head is taken once, at the commit, for the two records that stand
    assert sum("RETURNING" in u.upper() for u in updates) == 1
    with Session(engine) as s:
        rows = _mine(s, tag)
        assert [r.action for r in rows] == ["savepoint.before", "savepoint.after"]
        assert rows[1].seq == rows[0].seq + 1 and rows[1].prev_hash == rows[0].hash
        assert audit.verify(s).ok


def test_nested_savepoints_keep_what_was_released_and_drop_what_was_rolled_back(engine: Engine) -> None:
    factory = make_session_factory(engine)
    tag = new_id()
    with unit_of_work(factory) as s:
        with s.begin_nested():
            audit.record(s, action="outer.kept", subject_type="test", subject_id=tag)
            try:
                with s.begin_nested():
                    audit.record(s, action="inner.dropped", subject_type="test", subject_id=tag)
                    raise RuntimeError("undo the inner savepoint")
            except RuntimeError:
                pass
            audit.record(s, action="outer.kept.too", subject_type="test", subject_id=tag)
        try:
            with s.begin_nested():
                with s.begin_nested():
                    audit.record(s, action="released.then.dropped", subject_type="test", subject_id=tag)
                raise RuntimeError("undo the savepoint around a released one")
        except RuntimeError:
            pass
        audit.record(s, action="last", subject_type="test", subject_id=tag)
    with Session(engine) as s:
        rows = _mine(s, tag)
        assert [r.action for r in rows] == ["outer.kept", "outer.kept.too", "last"]
        assert [b.seq - a.seq for a, b in pairwise(rows)] == [1, 1]
        assert audit.verify(s).ok


def test_the_head_is_not_taken_until_the_commit(engine: Engine) -> None:
    factory = make_session_factory(engine)
    tag = new_id()
    with head_updates(engine) as updates, unit_of_work(factory) as s:
        audit.record(s, action="late.one", subject_type="test", subject_id=tag)
        s.flush()
        s.execute(select(func.count()).select_from(AuditHead)).scalar_one()
        audit.record(s, action="late.two", subject_type="test", subject_id=tag)
        s.flush()
        # still nobody else's wait: the chain's head is untouched while the transaction works
        assert updates == []
        # reading the audit log in the same transaction: its own records are there (chained first)
        assert [r.action for r in _mine(s, tag)] == ["late.one", "late.two"]
        audit.record(s, action="late.three", subject_type="test", subject_id=tag)
    # taken once (by the read); the commit chained the third record on in memory
    assert sum("RETURNING" in u.upper() for u in updates) == 1
    with Session(engine) as s:
        rows = _mine(s, tag)
        assert [r.action for r in rows] == ["late.one", "late.two", "late.three"]
        assert all(b.prev_hash == a.hash for a, b in pairwise(rows))
        assert audit.verify(s).ok


def test_a_rolled_back_transaction_leaves_the_head_as_it_was(engine: Engine) -> None:
    factory = make_session_factory(engine)
    tag = new_id()
    s = factory()
    try:
        audit.record(s, action="rollback.gone", subject_type="test", subject_id=tag)
        audit.record(s, action="rollback.gone", subject_type="test", subject_id=tag)
        s.rollback()
        # the same session, a new transaction: the head is taken (locked) again, not reused from memory
        with head_updates(engine) as updates:
            audit.record(s, action="rollback.kept", subject_type="test", subject_id=tag)
            s.commit()
        assert sum("RETURNING" in u.upper() for u in updates) == 1
    finally:
        s.close()
    with Session(engine) as s:
        assert [r.action for r in _mine(s, tag)] == ["rollback.kept"]
        assert audit.verify(s).ok


def test_a_released_savepoint_then_more_records_keep_one_chain(engine: Engine) -> None:
    factory = make_session_factory(engine)
    tag = new_id()
    with unit_of_work(factory) as s:
        with s.begin_nested():
            audit.record(s, action="nested.one", subject_type="test", subject_id=tag)
        audit.record(s, action="nested.two", subject_type="test", subject_id=tag)
        audit.record(s, action="nested.three", subject_type="test", subject_id=tag)
    with Session(engine) as s:
        rows = _mine(s, tag)
        assert [r.action for r in rows] == ["nested.one", "nested.two", "nested.three"]
        assert audit.verify(s).ok


def test_concurrent_transactions_of_several_records_never_fork_the_chain(engine: Engine) -> None:
    factory = make_session_factory(engine)
    tag = new_id()

    def write(i: int) -> None:
        with unit_of_work(factory) as s:
            for j in range(3):
                audit.record(s, action="concurrent.batch", subject_type="test", subject_id=tag,
                             data={"writer": i, "j": j})

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(write, range(18)))
    with Session(engine) as s:
        n = s.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.subject_id == tag)).scalar_one()
        assert n == 54
        # each writer's three records are consecutive: the head is held to the end of its transaction
        rows = _mine(s, tag)
        for k in range(0, 54, 3):
            assert len({r.data["writer"] for r in rows[k:k + 3]}) == 1
        assert audit.verify(s).ok
