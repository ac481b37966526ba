"""Engine, sessions and the declarative base. Nothing is created at import time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from api.sqlite_writes import WriteQueue, reading

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def is_transient(exc: BaseException) -> bool:
    """A database error that may pass by itself: the server is down or restarting, the connection
    dropped, a lock or deadlock (SQLite "database is locked", PostgreSQL deadlock / serialization
    failure), the pool exhausted. Trying the same transaction again later is the right answer;
    anything else (a constraint, a bug) would fail the same way again."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError
                  | sa_exc.TimeoutError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Statement parameters carry message text, names and phone numbers; keep them out of error
    # messages and therefore out of logs (COMPLIANCE: no personal data in logs).
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        # Waiting for the write lock happens in api.sqlite_writes' queue, holding a pooled
        # connection: the pool must never be the bottleneck (extra connections are closed on return).
        file_db = make_url(url).database not in (None, "", ":memory:")
        if file_db:
            kwargs.setdefault("pool_size", 10)
            kwargs.setdefault("max_overflow", -1)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        if file_db:
            WriteQueue().install(engine)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling lets RELEASE SAVEPOINT commit the outer
            # transaction; take control (SQLAlchemy's documented recipe) so a unit of work is
            # one transaction. IMMEDIATE: writers queue up front instead of failing on upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A read that asked for it (``read_only(engine)``) starts deferred: under WAL it runs
            # beside the writer instead of queueing for the write lock.
            deferred = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


READ_ONLY = "concierge_read_only"


@contextmanager
def read_only(engine: Engine) -> Iterator[Session]:
    """A session for reads only. On SQLite it does not take the write lock (a deferred ``BEGIN``;
    WAL readers never block the writer), so a poll from another process does not delay an ack."""
    with reading(), engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        with Session(bind=conn) as session:
            yield session
            session.rollback()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # The flush hook that marks CX rollup days dirty is installed by each process's wiring
    # (``feedback.rollups.install``), not here: the core imports no domain.
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error. Services never commit."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def import_all_models() -> None:
    """Register every table on ``Base.metadata`` (for Alembic and tests)."""
    import importlib

    for module in (
        "api.audit.models",
        "api.hcps.models",
        "api.conversations.models",
        "api.handoffs.models",
        "api.requests.models",
        "api.safety.models",
        "knowledge.models",
        "feedback.models",
        "feedback.rollups",
        "api.channels.whatsapp.models",
        "api.staff.models",
        "api.staff.notes",
        "api.sla.models",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
