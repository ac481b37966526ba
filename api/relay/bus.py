"""The relay bus: "conversation X changed" hints, from whoever committed the change to every open stream.

The database is the truth; a hint carries only a conversation id and means "look again". Streams
re-read the database on every hint *and* every few seconds without one, so a lost hint (a restart,
Redis down) delays a message by at most one poll interval and never loses it.

``InProcessBus`` serves one api process. ``RedisBus`` fans hints out over Redis pub/sub to every api
process (ARCHITECTURE.md: "live-relay fan-out over Redis pub/sub"); it also wakes its own process's
streams directly, so a local hint never waits for a Redis round trip.

``publish`` may be called from any thread (database work runs in worker threads; the after-commit
hook fires there): it never blocks and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

log = logging.getLogger("concierge.relay")

CHANNEL = "concierge:relay"


class Subscription:
    """One stream's interest in one conversation. ``wait`` returns when a hint arrived (or times out)."""

    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        self._event = asyncio.Event()
        self.hints = 0

    def wake(self) -> None:
        self.hints += 1
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if a hint arrived (now or since the last wait), False after ``timeout`` seconds without one.

        The flag is cleared on return, before the caller re-reads the database, so a hint published
        while that read runs makes the next ``wait`` return at once: no change slips between the two.
        """
        if not self._event.is_set():
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return False
        self._event.clear()
        return True


class RelayBus(Protocol):
    """What streams and the after-commit hook need from a bus."""

    def publish(self, conversation_id: str) -> None:
        """Thread-safe, non-blocking hint that this conversation changed (after the commit)."""
        ...

    def subscribe(self, conversation_id: str) -> AbstractAsyncContextManager[Subscription]:
        """``async with bus.subscribe(cid) as sub: await sub.wait(2.0)``."""
        ...

    def wake_all(self) -> None:
        """Wake every subscription of this process (used at shutdown)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class _LocalWaiters:
    """Subscriptions of this process, touched only on the event loop's thread."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def _bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def _wake_local(self, conversation_id: str) -> None:
        for sub in list(self._subs.get(conversation_id, ())):
            sub.wake()

    def _call_in_loop(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not started (or already shut down): nobody is listening in this process
        if threading.get_ident() == self._loop_thread:
            fn(*args)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(fn, *args)

    @asynccontextmanager
    async def subscribe(self, conversation_id: str) -> AsyncIterator[Subscription]:
        if self._loop is None:
            self._bind_loop()
        sub = Subscription(conversation_id)
        self._subs.setdefault(conversation_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(conversation_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[conversation_id]

    def wake_all(self) -> None:
        """Wake every stream of this process (shutdown: they notice and end)."""
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.wake()

    def subscriber_count(self, conversation_id: str | None = None) -> int:
        if conversation_id is not None:
            return len(self._subs.get(conversation_id, ()))
        return sum(len(s) for s in self._subs.values())


class InProcessBus(_LocalWaiters):
    """Hints within one api process (the default when no Redis is configured)."""

    kind = "memory"

    def publish(self, conversation_id: str) -> None:
        self._call_in_loop(self._wake_local, conversation_id)

    async def start(self) -> None:
        self._bind_loop()

    async def close(self) -> None:
        self._loop = None


class RedisBus(_LocalWaiters):
    """Hints across api processes over Redis pub/sub; local streams are woken directly as well.

    One Redis channel carries every hint as ``{"c": conversation_id, "o": origin}``; a process skips
    its own hints (it already woke its streams). If Redis is unreachable the bus keeps reconnecting
    in the background and streams fall back to their periodic re-read.
    """

    kind = "redis"

    def __init__(self, url: str, *, channel: str = CHANNEL, reconnect_delay: float = 1.0) -> None:
        super().__init__()
        self.url = url
        self.channel = channel
        self.reconnect_delay = reconnect_delay
        self.origin = uuid.uuid4().hex
        self._outgoing: asyncio.Queue[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._subscribed = asyncio.Event()
        self.received = 0  # hints from other processes (tests and diagnostics)
        self.published = 0

    def publish(self, conversation_id: str) -> None:
        self._call_in_loop(self._publish_in_loop, conversation_id)

    def _publish_in_loop(self, conversation_id: str) -> None:
        self._wake_local(conversation_id)
        if self._outgoing is not None:
            self._outgoing.put_nowait(conversation_id)

    async def start(self) -> None:
        import redis.asyncio as redis

        self._bind_loop()
        self._client = redis.Redis.from_url(self.url, socket_connect_timeout=2.0, health_check_interval=15)
        self._outgoing = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._publisher(), name="relay-redis-publish"),
                       asyncio.create_task(self._listener(), name="relay-redis-listen")]

    async def wait_ready(self, timeout: float = 5.0) -> bool:
        """True once the listener is subscribed (tests: hints published before that are not seen)."""
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _publisher(self) -> None:
        assert self._outgoing is not None
        while True:
            cid = await self._outgoing.get()
            payload = json.dumps({"c": cid, "o": self.origin}, separators=(",", ":"))
            try:
                await self._client.publish(self.channel, payload)
                self.published += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: the hint is lost, the streams' re-read covers it
                log.warning("relay hint for %s not published to Redis: %s", cid, exc)

    async def _listener(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is None or message.get("type") != "message":
                        continue
                    self._on_message(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                log.warning("relay Redis subscription lost (%s); retrying in %.1fs", exc, self.reconnect_delay)
                await asyncio.sleep(self.reconnect_delay)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())

    def _on_message(self, data: Any) -> None:
        try:
            hint = json.loads(data)
            cid, origin = str(hint["c"]), str(hint["o"])
        except (TypeError, ValueError, KeyError):
            log.warning("ignoring a malformed relay hint on %s", self.channel)
            return
        if origin == self.origin:
            return
        self.received += 1
        self._wake_local(cid)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None
        self._loop = None


def make_bus(redis_url: str) -> InProcessBus | RedisBus:
    """Redis when ``CONCIERGE_REDIS_URL`` is set (several api processes), else in-process."""
    return RedisBus(redis_url) if redis_url else InProcessBus()
