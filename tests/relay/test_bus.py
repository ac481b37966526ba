"""The relay bus (in-process and real Redis) and the after-commit hook that feeds it."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.conversations import service as conversations
from api.db import make_session_factory, unit_of_work
from api.relay import notify
from api.relay.bus import InProcessBus, RedisBus, make_bus
from api.relay.hooks import install
from tests.conftest import redis_available
from tests.relay.conftest import REDIS_URL

needs_redis = pytest.mark.skipif(not redis_available(REDIS_URL), reason=f"no Redis server answers at {REDIS_URL}")


def test_in_process_publish_from_a_worker_thread_wakes_only_that_conversations_waiters() -> None:
    async def scenario() -> None:
        bus = InProcessBus()
        await bus.start()
        async with bus.subscribe("a") as a1, bus.subscribe("a") as a2, bus.subscribe("b") as b:
            assert bus.subscriber_count("a") == 2
            started = time.monotonic()
            threading.Thread(target=bus.publish, args=("a",)).start()
            assert await a1.wait(5.0) and await a2.wait(5.0)
            assert time.monotonic() - started < 1.0
            assert not await b.wait(0.05)
            # Nothing more was published: the next wait times out.
            assert not await a1.wait(0.05)
            # A hint that arrives while the stream is busy (reading the DB) is not lost.
            bus.publish("a")
            await asyncio.sleep(0)
            assert await a1.wait(0.0)
        assert bus.subscriber_count() == 0
        await bus.close()
        bus.publish("a")  # after close: silently nothing

    asyncio.run(scenario())


def test_publish_before_start_is_a_no_op() -> None:
    InProcessBus().publish("x")
    RedisBus("redis://127.0.0.1:1/0").publish("x")


def test_make_bus_picks_redis_only_when_configured() -> None:
    assert isinstance(make_bus(""), InProcessBus)
    assert isinstance(make_bus(REDIS_URL), RedisBus)


@needs_redis
def test_two_redis_buses_carry_hints_between_processes() -> None:
    """Two buses = two api processes: a hint published in one wakes the other's streams via Redis."""

    async def scenario() -> None:
        one, two = RedisBus(REDIS_URL), RedisBus(REDIS_URL)
        await one.start()
        await two.start()
        try:
            assert await one.wait_ready() and await two.wait_ready()
            async with one.subscribe("conv-x") as local, two.subscribe("conv-x") as remote, \
                    two.subscribe("conv-y") as unrelated:
                started = time.monotonic()
                threading.Thread(target=one.publish, args=("conv-x",)).start()
                assert await local.wait(5.0)  # its own process: woken directly
                assert await remote.wait(5.0)  # the other process: through Redis
                assert time.monotonic() - started < 1.0
                assert not await unrelated.wait(0.2)
                # A process ignores its own hints coming back from Redis (already woken locally).
                assert not await local.wait(0.3)
                assert one.received == 0 and two.received == 1 and one.published == 1
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_redis_down_loses_hints_but_never_raises_and_local_streams_still_wake() -> None:
    async def scenario() -> None:
        bus = RedisBus("redis://127.0.0.1:1/0", reconnect_delay=0.1)
        await bus.start()
        try:
            async with bus.subscribe("c") as sub:
                bus.publish("c")
                assert await sub.wait(1.0)
                await asyncio.sleep(0.3)  # the publisher and listener hit the dead server and carry on
                assert not await bus.wait_ready(0.1)
        finally:
            await bus.close()

    asyncio.run(scenario())


class RecordingBus:
    """Stands in for a bus: records the hints the after-commit hook publishes."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, conversation_id: str) -> None:
        self.published.append(conversation_id)


def test_notify_publishes_after_the_commit_only(engine: Engine) -> None:
    bus = RecordingBus()
    factory = make_session_factory(engine)
    install(factory, bus)
    now = datetime.now(UTC)
    with unit_of_work(factory) as s:
        conv, _ = conversations.create_webchat(s, now=now, market="US")
        conversations.persist_inbound(s, conv, text="hello", now=now)  # notifies
        s.flush()
        with s.begin_nested():  # releasing a savepoint is not the commit
            notify(s, conv.id)
        assert bus.published == []
    assert bus.published == [conv.id]  # once, though notified twice

    bus.published.clear()
    with pytest.raises(RuntimeError), unit_of_work(factory) as s:
        conv2, _ = conversations.create_webchat(s, now=now, market="US")
        notify(s, conv2.id)
        raise RuntimeError("rolled back")
    with unit_of_work(factory) as s:  # the same factory, a later commit: the rolled-back hint is gone
        notify(s, conv.id)
    assert bus.published == [conv.id]


def test_sessions_without_a_bus_ignore_notify(engine: Engine) -> None:
    plain = sessionmaker(bind=engine)
    with plain() as s:
        notify(s, "anything")
        assert "relay_pending" not in s.info
        s.commit()
    other_app = make_session_factory(engine)
    install(other_app, RecordingBus())
    assert plain().info.get("relay_bus") is None  # one app's bus never reaches another's sessions


def test_the_session_fixture_does_not_publish(session: Session) -> None:
    conv, _ = conversations.create_webchat(session, now=datetime.now(UTC), market="US")
    notify(session, conv.id)
    assert "relay_pending" not in session.info
