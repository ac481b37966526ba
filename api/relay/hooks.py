"""``notify(session, conversation_id)``: publish a relay hint once this session's transaction commits.

Services call ``notify`` wherever a conversation changes (a message stored, sent, a handoff claimed,
the state changed). Nothing is published before the commit (a stream would read the old rows) nor
after a rollback. The bus is found on ``session.info["relay_bus"]``, which the app puts on its own
session factory (``install``): sessions of another app, a CLI or a test have no bus and ``notify``
is a no-op there, so nothing leaks between apps.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

BUS_KEY = "relay_bus"
PENDING_KEY = "relay_pending"


def notify(session: Session, conversation_id: str) -> None:
    """Hint "this conversation changed" to live streams after ``session`` commits (never before)."""
    if session.info.get(BUS_KEY) is None:
        return
    pending: set[str] = session.info.setdefault(PENDING_KEY, set())
    pending.add(conversation_id)


def install(factory: sessionmaker[Session], bus: Any) -> None:
    """Every session ``factory`` makes from now on publishes its notified conversations to ``bus``."""
    info = dict(factory.kw.get("info") or {})
    info[BUS_KEY] = bus
    factory.configure(info=info)


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    # after_commit also fires when a SAVEPOINT is released; only the outermost commit counts.
    if session.get_nested_transaction() is not None:
        return
    pending: set[str] | None = session.info.pop(PENDING_KEY, None)
    bus = session.info.get(BUS_KEY)
    if not pending or bus is None:
        return
    for conversation_id in sorted(pending):
        bus.publish(conversation_id)


@event.listens_for(Session, "after_transaction_end")
def _forget_after_rollback(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended without a commit (rolled back): its hints are void.
    if transaction.parent is None:
        session.info.pop(PENDING_KEY, None)
