"""The audit log is append-only and hash-chained; tampering is detected."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from api.audit import service as audit


def _three(session: Session) -> None:
    for i in range(3):
        audit.record(session, action=f"test.{i}", subject_type="test", subject_id=str(i), data={"i": i})
    audit.chain_pending(session)  # chained at commit otherwise; these tests tamper within the transaction
    session.flush()


def _drop_guards(session: Session) -> None:
    if session.bind.dialect.name == "sqlite":  # type: ignore[union-attr]
        session.execute(text("DROP TRIGGER audit_event_no_update"))
        session.execute(text("DROP TRIGGER audit_event_no_delete"))
    else:
        session.execute(text("DROP TRIGGER audit_event_append_only ON audit_event"))


def test_a_fresh_chain_verifies(session: Session) -> None:
    _three(session)
    result = audit.verify(session)
    assert result.ok and result.checked >= 3


def test_the_database_refuses_update_and_delete(session: Session) -> None:
    _three(session)
    for stmt in ("UPDATE audit_event SET action = 'x'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
            session.execute(text(stmt))


def test_a_changed_record_is_detected(session: Session) -> None:
    _three(session)
    _drop_guards(session)
    session.execute(text("UPDATE audit_event SET data = '{\"i\": 99}' WHERE action = 'test.1'"))
    session.expire_all()
    result = audit.verify(session)
    assert not result.ok and result.reason == "content changed"


def test_a_deleted_record_is_detected(session: Session) -> None:
    _three(session)
    _drop_guards(session)
    session.execute(text("DELETE FROM audit_event WHERE action = 'test.1'"))
    session.expire_all()
    result = audit.verify(session)
    assert not result.ok


def test_a_reordered_record_is_detected(session: Session) -> None:
    _three(session)
    _drop_guards(session)
    # swap the payloads of two consecutive records
    rows = session.execute(text("SELECT seq, action FROM audit_event WHERE action IN ('test.0','test.1') "
                                "ORDER BY seq")).all()
    (s0, a0), (s1, a1) = rows
    session.execute(text("UPDATE audit_event SET action = :a WHERE seq = :s"), {"a": a1, "s": s0})
    session.execute(text("UPDATE audit_event SET action = :a WHERE seq = :s"), {"a": a0, "s": s1})
    session.expire_all()
    assert not audit.verify(session).ok


def test_a_truncated_tail_is_detected(session: Session) -> None:
    _three(session)
    _drop_guards(session)
    session.execute(text("DELETE FROM audit_event WHERE seq = (SELECT max(seq) FROM audit_event)"))
    session.expire_all()
    result = audit.verify(session)
    assert not result.ok and "tip" in result.reason
