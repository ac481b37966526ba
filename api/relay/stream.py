"""Server-sent event streams over the relay bus, and the ``Relay`` one api process holds.

A stream subscribes to its conversation *before* its first read, then loops: read the database
after its cursor, send what is new, wait for a hint or ``poll_interval`` seconds, read again. So a
change is seen within one poll interval even if every hint is lost; with hints, at once.

Message events carry ``id: <message id>``: a reconnecting ``EventSource`` sends it back as
``Last-Event-ID`` and the stream resumes after it, without duplicates. Streams end by themselves
after ``max_duration`` (the browser reconnects within ``retry`` ms), when the viewer's access ends,
or when the server is shutting down — an open stream must not hold a graceful shutdown hostage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from api.errors import InvalidInput
from api.relay.bus import InProcessBus, RedisBus, make_bus
from api.relay.schemas import RelayState
from api.relay.service import Batch

log = logging.getLogger("concierge.relay")

T = TypeVar("T")
# Stream reads that may run at once (each holds a thread and a connection for a few ms). More
# streams wait their turn on the event loop instead of crowding out the requests that write.
READ_CONCURRENCY = 8
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


@dataclass
class StreamConfig:
    poll_interval: float = 2.0  # re-read without a hint (a hint can be lost)
    heartbeat: float = 15.0  # comment line so proxies keep the connection; also re-checks access
    max_duration: float = 300.0  # the client reconnects with Last-Event-ID
    retry_ms: int = 1000  # EventSource reconnection delay


def read_only_sessions(engine: Engine) -> tuple[sessionmaker[Session], Engine | None]:
    """Sessions for the streams' re-reads, which are frequent (every stream, every poll interval).

    On a SQLite file the app's engine starts every transaction with ``BEGIN IMMEDIATE`` (the write
    lock), so a read would queue behind writers and hold them up. The streams read through an engine
    of their own instead: a deferred ``BEGIN`` (a WAL snapshot; readers and the writer never wait for
    each other) on connections that cannot write (``PRAGMA query_only``). PostgreSQL reads do not
    block: the app's engine is used as it is. Returns the factory and the engine to dispose, if any.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return sessionmaker(bind=engine, expire_on_commit=False), None
    reader = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           pool_size=READ_CONCURRENCY, max_overflow=2)

    @event.listens_for(reader, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA query_only=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(reader, "begin")
    def _deferred_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return sessionmaker(bind=reader, expire_on_commit=False), reader


@dataclass
class Relay:
    bus: InProcessBus | RedisBus
    read_sessions: sessionmaker[Session]
    config: StreamConfig = field(default_factory=StreamConfig)
    closing: bool = False
    open_streams: int = 0
    _read_engine: Engine | None = None
    _read_limiter: anyio.CapacityLimiter | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _restore_signals: list[tuple[int, Any]] = field(default_factory=list)

    @classmethod
    async def start(cls, redis_url: str, engine: Engine, config: StreamConfig | None = None) -> Relay:
        read_sessions, read_engine = read_only_sessions(engine)
        relay = cls(bus=make_bus(redis_url), read_sessions=read_sessions, config=config or StreamConfig(),
                    _read_engine=read_engine)
        relay._loop = asyncio.get_running_loop()
        await relay.bus.start()
        relay._end_streams_on_exit_signal()
        return relay

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a stream's blocking database read in a worker thread, at most ``READ_CONCURRENCY`` at once."""
        if self._read_limiter is None:
            self._read_limiter = anyio.CapacityLimiter(READ_CONCURRENCY)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._read_limiter)

    def begin_shutdown(self) -> None:
        """Open streams end at their next step (they are woken now). Call on the event loop."""
        self.closing = True
        self.bus.wake_all()

    def request_shutdown(self) -> None:
        """``begin_shutdown`` from any thread (a signal handler, a test stopping its server)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self.closing = True
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.begin_shutdown)

    async def close(self) -> None:
        self.begin_shutdown()
        for sig, handler in self._restore_signals:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        self._restore_signals = []
        await self.bus.close()
        if self._read_engine is not None:
            self._read_engine.dispose()

    def _end_streams_on_exit_signal(self) -> None:
        """Chain SIGINT/SIGTERM (uvicorn's graceful shutdown) to end open streams first.

        uvicorn waits for every open response before it shuts the app down; an event stream never
        finishes by itself, so without this a console left open would stall the shutdown.
        Only possible where the server runs in the main thread (``concierge serve``).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: FrameType | None, _previous: Any = previous) -> None:
                self.request_shutdown()
                _previous(signum, frame)

            signal.signal(sig, handler)
            self._restore_signals.append((sig, previous))


def resume_cursor(request: Request, after: int) -> int:
    """Where to resume: the ``Last-Event-ID`` a reconnecting EventSource sends, else ``?after=``."""
    raw = request.headers.get("last-event-id")
    if raw is None or not raw.strip():
        return after
    try:
        value = int(raw.strip())
    except ValueError as exc:
        raise InvalidInput("Last-Event-ID must be a message id (an integer)") from exc
    if value < 0:
        raise InvalidInput("Last-Event-ID must not be negative")
    return max(value, after)


def encode(event: str, data: str, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


Reader = Callable[[int], Awaitable[Batch | None]]
Check = Callable[[], Awaitable[bool]]
Probe = Callable[[], Awaitable[tuple[int, RelayState] | None]]


async def events(relay: Relay, conversation_id: str, cursor: int, read: Reader,
                 still_allowed: Check | None = None,
                 on_batch: Callable[[Batch], Awaitable[None]] | None = None,
                 probe: Probe | None = None, watch_state: bool = False) -> AsyncIterator[bytes]:
    """The SSE byte stream for one conversation from ``cursor`` on.

    ``read(cursor)`` returns what is new (None: the conversation is no longer streamable);
    ``still_allowed()`` runs at each heartbeat (False ends the stream); ``on_batch`` sees every
    non-empty batch before it is sent (audit). Without a hint the stream first runs ``probe()``
    (newest visible message id, state) and reads in full only if there is something newer than
    its cursor (or, with ``watch_state``, a new state).
    """
    cfg = relay.config
    loop = asyncio.get_running_loop()
    started = last_write = last_check = loop.time()
    relay.open_streams += 1
    try:
        yield f"retry: {cfg.retry_ms}\n\n".encode()
        async with relay.bus.subscribe(conversation_id) as sub:
            last_state: RelayState | None = None
            need_read = True
            while not relay.closing:
                batch = await read(cursor) if need_read else Batch(messages=[])
                if batch is None:
                    return
                chunks: list[bytes] = []
                if batch.state is not None and batch.state != last_state:
                    chunks.append(encode("state", batch.state.model_dump_json()))
                    last_state = batch.state
                for m in batch.messages:
                    chunks.append(encode("message", m.model_dump_json(), event_id=m.id))
                    cursor = m.id
                if batch.messages and on_batch is not None:
                    await on_batch(batch)
                now = loop.time()
                if chunks:
                    yield b"".join(chunks)
                    last_write = now
                if now - started >= cfg.max_duration:
                    return
                if now - last_check >= cfg.heartbeat:
                    if still_allowed is not None and not await still_allowed():
                        return
                    last_check = now
                if now - last_write >= cfg.heartbeat:
                    yield b": keep-alive\n\n"
                    last_write = now
                timeout = min(cfg.poll_interval, cfg.heartbeat - (now - last_write),
                              cfg.heartbeat - (now - last_check), cfg.max_duration - (now - started))
                if await sub.wait(max(timeout, 0.005)) or probe is None or relay.closing:
                    need_read = True
                    continue
                found = await probe()
                if found is None:
                    return
                newest, state = found
                need_read = newest > cursor or (watch_state and state != last_state)
    finally:
        relay.open_streams -= 1


def sse_response(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
