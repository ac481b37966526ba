"""WhatsApp inbound: store the raw webhook and acknowledge; ingest it afterwards, in order.

The webhook (``router.incoming``) verifies Twilio's signature, validates the form and then does
one thing: ``store_raw`` — one INSERT of the raw delivery into ``whatsapp_inbound`` (a repeated
``MessageSid`` hits the unique key: already stored, still a 200) — and commits. No conversation
lookup or lock, no audit-chain write: Twilio waits only for that INSERT.

Everything else happens in the ``Ingester``, which runs in the worker process (``concierge
worker``, started by ``concierge run``) or, with ``CONCIERGE_WHATSAPP_WORKER=inline``, as a task
of the api process. It takes pending rows in ``id`` order — the order they were persisted — and
(on SQLite up to ``chunk`` rows per transaction, on PostgreSQL one) for each finds or creates the
conversation, stores the message and its inbox row (``record_inbound``: the ``message.received``
audit event carries the time the webhook was stored), records a STOP/START consent change, and
marks the raw row ``done``. Then the conversation worker screens it (AE and opt-out first) and
runs the turn. A crash between the ack and ingestion loses nothing: pending rows are ingested when
the worker starts.

Where the raw rows live (``intake_engine``): on PostgreSQL in the main database (row locks, no
global write lock). On SQLite in a sibling file (``concierge.db`` → ``concierge-intake.db``): SQLite
has one write lock per file, and with the worker in another process every screen, turn and outbox
transaction of the worker would otherwise hold the lock the ack needs — across processes SQLite's
busy handler polls (1, 2, 5 … 100 ms) and a niced worker preempted while holding the lock stalls
every ack behind it. In the intake file the api is the only regular writer; the worker reads it
(WAL: readers never block the writer) and marks ingested rows ``done`` in one small batched UPDATE
per round, after the ingest transaction in the main file has committed. A crash between the two
re-ingests the row on start and ``record_inbound`` finds its message by ``MessageSid`` (unique):
nothing is stored or processed twice.

Order: on PostgreSQL the ack takes a transaction-scoped advisory lock on the sender's number
before its INSERT, so one number's rows commit in ``id`` order (a lower id can never become
visible after a higher one the ingester has already taken); SQLite's single writer gives the same.

Opt-out between ack and ingestion: ``opt_out`` is set on the raw row when the text is a STOP
keyword or Twilio says ``OptOutType=STOP``; the outbox dispatcher treats a number with such a
pending row as opted out (``pending_stop``), so nothing is sent after the STOP is persisted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

from api.audit import service as audit
from api.channels.whatsapp import service as wa
from api.channels.whatsapp.models import WhatsappInbound
from api.clock import Clock
from api.db import is_transient, make_engine, make_session_factory, read_only, unit_of_work
from api.polling_loop import PollingLoop
from api.safety import rules

log = logging.getLogger("concierge.whatsapp.ingest")

PENDING, DONE, FAILED = "pending", "done", "failed"
# Once ingested, the raw copy of the number and the text is dropped: the message row is the record
# (and GDPR export / erasure reach it there). What stays: MessageSid (replays), times, message id.
SCRUBBED: dict[str, Any] = {"params": [], "from_address": ""}
MAX_ATTEMPTS = 8  # an ingest that fails this often (~25 s of back-off) is set aside as failed and audited


_INTAKES: dict[str, tuple[Engine, sessionmaker[Session]]] = {}
_INTAKES_LOCK = threading.Lock()


def intake_url(database_url: str) -> str | None:
    """The SQLite intake file beside a SQLite database file; None where the main database is used."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database or "")
    return url.set(database=str(path.with_name(f"{path.stem}-intake{path.suffix or '.db'}"))).render_as_string(
        hide_password=False)


def _intake(engine: Engine) -> tuple[Engine, sessionmaker[Session]] | None:
    url = intake_url(engine.url.render_as_string(hide_password=False))
    if url is None:
        return None
    with _INTAKES_LOCK:  # one engine (and one write queue) per intake file in this process
        found = _INTAKES.get(url)
        if found is None:
            eng = make_engine(url)
            WhatsappInbound.metadata.create_all(eng, tables=[WhatsappInbound.__table__])  # type: ignore[list-item]
            found = _INTAKES[url] = (eng, make_session_factory(eng))
        return found


def intake_engine(engine: Engine) -> Engine:
    """Where ``whatsapp_inbound`` lives for this main database (see the module docstring)."""
    found = _intake(engine)
    return engine if found is None else found[0]


def intake_sessions(engine: Engine, main: sessionmaker[Session]) -> sessionmaker[Session]:
    found = _intake(engine)
    return main if found is None else found[1]


def is_stop(form: wa.InboundForm) -> bool:
    return form.opt_out_type == "STOP" or rules.is_opt_out(rules.normalise(form.body))


def store_raw(session: Session, form: wa.InboundForm, pairs: Sequence[tuple[str, str]], *, now: datetime) -> bool:
    """The ack's only write: the raw delivery. False when this MessageSid was already stored."""
    dialect = session.get_bind().dialect.name
    values = {"message_sid": form.message_sid, "from_address": form.from_, "params": [list(p) for p in pairs],
              "opt_out": is_stop(form), "status": PENDING, "received_at": now}
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        # One number's deliveries commit in id order (see the module docstring).
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:a))"), {"a": form.from_})
        stmt = postgresql.insert(WhatsappInbound).values(**values).on_conflict_do_nothing(
            index_elements=["message_sid"])
    elif dialect == "sqlite":
        stmt = sqlite.insert(WhatsappInbound).values(**values).on_conflict_do_nothing(
            index_elements=["message_sid"])
    else:  # pragma: no cover - the product runs on SQLite or PostgreSQL
        raise RuntimeError(f"unsupported database {dialect}")
    return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def pending_stop(session: Session, address: str) -> bool:
    """A STOP from this number is persisted but not ingested yet: treat the number as opted out.
    Read in ``session`` where the intake is the main database, else from the intake file."""
    stmt = select(WhatsappInbound.id).where(WhatsappInbound.from_address == address,
                                            WhatsappInbound.status == PENDING,
                                            WhatsappInbound.opt_out.is_(True)).limit(1)
    bind = session.get_bind()
    main = bind.engine if isinstance(bind, Connection) else bind
    intake = intake_engine(main)
    if intake is main:
        return session.execute(stmt).first() is not None
    with read_only(intake) as s:
        return s.execute(stmt).first() is not None


def pending_count(session: Session) -> int:
    return int(session.execute(
        select(func.count()).select_from(WhatsappInbound).where(WhatsappInbound.status == PENDING)).scalar_one())


@dataclass
class Ingested:
    raw_id: int
    result: wa.InboundResult | None  # None: the row was no longer pending (another ingester took it)


class Ingester(PollingLoop):
    """Ingests pending raw webhooks in ``id`` order, one transaction each, then hands the message to
    the conversation worker (``on_ingested``) and queued channel replies to the dispatcher. ``kick`` it
    when a raw row was just stored in this process: it looks now rather than at the next poll."""

    task_name = "whatsapp-ingest"

    def __init__(
        self,
        engine: Engine,
        session_factory: sessionmaker[Session],
        clock: Clock,
        *,
        market: str | None,
        on_ingested: Callable[[str], None],
        on_replies: Callable[[], None] | None = None,
        poll_interval: float = 0.05,
        idle_poll_max: float | None = None,
        batch: int = 200,
        chunk: int = 20,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.session_factory = session_factory
        self.intake = intake_engine(engine)
        self.intake_sessions = intake_sessions(engine, session_factory)
        self.separate = self.intake is not engine
        self.clock = clock
        self.market = market
        self.on_ingested = on_ingested
        self.on_replies = on_replies
        self.poll_interval = poll_interval
        # While nothing arrives the wait doubles up to this; work or a kick brings it back to poll_interval.
        self.idle_poll_max = max(poll_interval, idle_poll_max if idle_poll_max is not None else poll_interval)
        self.batch = batch
        # Rows ingested per transaction. Only where the intake is its own SQLite file: there one write
        # lock serialises everything anyway. On PostgreSQL a chunk would hold several conversations'
        # row locks and the audit-chain head at once, in an order a turn can cross: deadlocks.
        self.chunk = chunk if self.separate else 1
        self._failures: dict[int, int] = {}

    # While the database is unreachable: wait this long between rounds, doubling up to the maximum,
    # and say so once (a round every poll interval would log a traceback 20 times a second).
    outage_backoff_s = 0.5
    outage_backoff_max_s = 10.0

    async def _run(self) -> None:
        backoff = 0.0
        idle_wait = self.poll_interval
        while not self._closing:
            done = 0
            try:
                done = await self.run_once()
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("whatsapp ingest round failed")
                else:
                    if backoff == 0.0:
                        log.warning("whatsapp ingest: database unavailable (%s); retrying with backoff up to %gs",
                                    type(exc).__name__, self.outage_backoff_max_s)
                    backoff = min(max(backoff * 2, self.outage_backoff_s), self.outage_backoff_max_s)
                    await self._pause(backoff)  # not woken early by new webhooks: they wait in order
                    continue
            if backoff:
                log.info("whatsapp ingest: database reachable again")
                backoff = 0.0
            if done == 0:
                if await self._wait_for_kick(idle_wait):
                    idle_wait = self.poll_interval  # kicked: traffic, look often again
                else:
                    idle_wait = min(idle_wait * 2, self.idle_poll_max)
            else:
                idle_wait = self.poll_interval

    async def _pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not self._closing and loop.time() < end:
            await asyncio.sleep(min(0.1, end - loop.time()))

    async def run_once(self) -> int:
        """Ingest what is pending now, in order, ``chunk`` rows per transaction. Returns how many
        rows were ingested."""
        ids = await asyncio.to_thread(self._pending_ids)
        count = 0
        for start in range(0, len(ids), self.chunk):
            if self._closing:
                break
            chunk = ids[start:start + self.chunk]
            try:
                done = await asyncio.to_thread(self._ingest, chunk)
            except Exception as exc:
                if is_transient(exc):
                    raise  # an outage or a lock, not this row's fault: the round backs off
                if len(chunk) == 1:
                    # Stop here: a later row of the same number must not overtake this one.
                    attempts = await asyncio.to_thread(self._failed, chunk[0], exc)
                    await asyncio.sleep(min(0.1 * 2 ** attempts, 5.0))
                    break
                # One row spoiled the chunk's transaction: go one by one to set it aside.
                done = []
                for raw_id in chunk:
                    try:
                        done += await asyncio.to_thread(self._ingest, [raw_id])
                    except Exception as one_exc:
                        if is_transient(one_exc):
                            raise
                        attempts = await asyncio.to_thread(self._failed, raw_id, one_exc)
                        await asyncio.sleep(min(0.1 * 2 ** attempts, 5.0))
                        break
                if len(done) < len(chunk):
                    await self._after(done)
                    count += len(done)
                    break
            await self._after(done)
            count += len(done)
        return count

    async def _after(self, done: list[Ingested]) -> None:
        marks = [(d.raw_id, d.result.message_id) for d in done if d.result is not None]
        if self.separate and marks:
            await asyncio.to_thread(self._mark_done, marks)
        for d in done:
            result = d.result
            if result is None:
                continue
            if result.needs_turn:
                self.on_ingested(result.conversation_id)
            if result.queued_replies and self.on_replies is not None:
                self.on_replies()

    def _mark_done(self, rows: list[tuple[int, int]]) -> None:
        """One short write to the intake file per round (a crash before it only re-ingests
        these rows, which ``record_inbound`` recognises by MessageSid)."""
        now = self.clock.now()
        with unit_of_work(self.intake_sessions) as session:
            for raw_id, message_id in rows:
                session.execute(update(WhatsappInbound).where(WhatsappInbound.id == raw_id,
                                                              WhatsappInbound.status == PENDING)
                                .values(status=DONE, processed_at=now, message_id=message_id, **SCRUBBED))

    async def idle(self, timeout: float = 30.0) -> None:
        """Until nothing is pending (tests, the benchmark)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await asyncio.to_thread(self._pending_ids):
            if loop.time() > deadline:
                raise TimeoutError("whatsapp ingest did not drain")
            self._wake.set()
            await asyncio.sleep(0.01)

    def _pending_ids(self) -> list[int]:
        with read_only(self.intake) as session:
            return list(session.execute(
                select(WhatsappInbound.id).where(WhatsappInbound.status == PENDING)
                .order_by(WhatsappInbound.id).limit(self.batch)).scalars())

    def _ingest(self, raw_ids: list[int]) -> list[Ingested]:
        """These rows (in id order) in one transaction of the main database."""
        now = self.clock.now()
        out: list[Ingested] = []
        if self.separate:
            with read_only(self.intake) as intake:
                stored = {r.id: (r.status, r.params, r.received_at) for r in intake.execute(
                    select(WhatsappInbound).where(WhatsappInbound.id.in_(raw_ids))).scalars()}
            with unit_of_work(self.session_factory) as session:
                for raw_id in raw_ids:
                    status, params, received_at = stored[raw_id]
                    if status != PENDING:
                        out.append(Ingested(raw_id, None))
                        continue
                    form = wa.InboundForm.parse(dict(_first_values(params)))
                    out.append(Ingested(raw_id, wa.record_inbound(session, form, now=now, market=self.market,
                                                                  received_at=received_at)))
        else:
            with unit_of_work(self.session_factory) as session:
                stmt = select(WhatsappInbound).where(WhatsappInbound.id.in_(raw_ids)).order_by(WhatsappInbound.id)
                if session.get_bind().dialect.name != "sqlite":
                    stmt = stmt.with_for_update()
                for raw in session.execute(stmt).scalars().all():
                    if raw.status != PENDING:
                        out.append(Ingested(raw.id, None))
                        continue
                    form = wa.InboundForm.parse(dict(_first_values(raw.params)))
                    result = wa.record_inbound(session, form, now=now, market=self.market,
                                               received_at=raw.received_at)
                    raw.status = DONE
                    raw.processed_at = now
                    raw.message_id = result.message_id
                    raw.params, raw.from_address = [], ""  # as SCRUBBED
                    out.append(Ingested(raw.id, result))
        for d in out:
            self._failures.pop(d.raw_id, None)
        return out

    def _failed(self, raw_id: int, exc: Exception) -> int:
        attempts = self._failures.get(raw_id, 0) + 1
        self._failures[raw_id] = attempts
        if attempts < MAX_ATTEMPTS:
            log.warning("ingest of whatsapp inbound %s failed (attempt %d), will retry: %r", raw_id, attempts, exc)
            return attempts
        log.error("ingest of whatsapp inbound %s failed %d times; set aside as failed: %r", raw_id, attempts, exc)
        now = self.clock.now()
        with unit_of_work(self.intake_sessions) as intake:
            raw = intake.get(WhatsappInbound, raw_id)
            if raw is None or raw.status != PENDING:
                return 0
            raw.status = FAILED
            raw.processed_at = now
            raw.error = repr(exc)[:2000]
        with unit_of_work(self.session_factory) as session:
            audit.record(session, action="whatsapp.inbound_failed", subject_type="whatsapp_inbound",
                         subject_id=str(raw_id), data={"attempts": attempts, "error": type(exc).__name__}, at=now)
        self._failures.pop(raw_id, None)
        return 0


def _first_values(pairs: list[list[str]]) -> list[tuple[str, str]]:
    """The form as ``InboundForm.parse`` reads it: the first value of each key."""
    seen: dict[str, str] = {}
    for key, value in pairs:
        seen.setdefault(key, value)
    return list(seen.items())
