"""The api's Rasa client over several replicas, against stand-ins on real loopback sockets.

Retried on another replica: only what certainly never reached Rasa (connection refused). Never
retried: a replica that took the request and then was slow, failed with HTTP 500 or cut the
connection — it may have advanced the conversation's tracker, and a second replica would apply the
same message twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine

from api.rasa.client import RasaClient, RasaFailure, RasaReply
from api.settings import Settings
from tests.fakes.rasa_stub import StubRasa, dead_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


def sender_first_on(client: RasaClient, url: str) -> str:
    """A sender whose preferred replica (by hash) is ``url``."""
    for i in range(1000):
        sender = f"conv-{i}"
        if client.order(sender)[0].url == url:
            return sender
    raise AssertionError(f"no sender prefers {url}")


async def started(*modes: str) -> list[StubRasa]:
    return [await StubRasa(mode).start() for mode in modes]


def test_a_refused_connection_moves_the_turn_to_the_next_replica() -> None:
    async def body() -> None:
        (ok,) = await started("ok")
        down = f"http://127.0.0.1:{dead_port()}"
        client = RasaClient([down, ok.url], "t", 5.0)
        try:
            sender = sender_first_on(client, down)
            reply = await client.turn(sender, "hello")
            assert isinstance(reply, RasaReply), reply
            assert reply.replica == ok.url and reply.messages[0]["text"] == f"from {ok.port}"
            assert ok.senders == [sender]
            assert client.replicas[0].marked_down == 1
        finally:
            await client.aclose()
            await ok.stop()

    run(body)


@pytest.mark.parametrize(("mode", "reason"), [("slow", "timeout"), ("error", "http_error"), ("cut", "unreachable")])
def test_a_replica_that_took_the_request_is_never_asked_again_on_another(mode: str, reason: str) -> None:
    async def body() -> None:
        took, other = await started(mode, "ok")
        client = RasaClient([took.url, other.url], "t", 1.0)
        try:
            sender = sender_first_on(client, took.url)
            failure = await client.turn(sender, "start the samples form")
            assert isinstance(failure, RasaFailure), failure
            assert failure.reason == reason and failure.replica == took.url
            assert took.senders == [sender]
            assert other.senders == [], "the message must not reach a second replica"
            assert client.replicas[0].marked_down == 0, "a replica that answered is not marked down"
        finally:
            await client.aclose()
            await took.stop()
            await other.stop()

    run(body)


def test_every_replica_down_is_a_failure_naming_each_of_them() -> None:
    async def body() -> None:
        urls = [f"http://127.0.0.1:{dead_port()}" for _ in range(2)]
        client = RasaClient(urls, "t", 2.0)
        try:
            failure = await client.turn("conv-x", "hello")
            assert isinstance(failure, RasaFailure)
            assert failure.reason == "unreachable"
            assert all(url in failure.detail for url in urls), failure.detail
            # Marked down, but still tried while nothing else is left: a restarted replica is found.
            again = await client.turn("conv-x", "hello")
            assert isinstance(again, RasaFailure) and again.reason == "unreachable"
            assert [r.marked_down for r in client.replicas] == [2, 2]
        finally:
            await client.aclose()

    run(body)


def test_one_replica_keeps_today_s_failure_shape() -> None:
    async def body() -> None:
        client = RasaClient(f"http://127.0.0.1:{dead_port()}", "t", 2.0)
        try:
            failure = await client.turn("conv-y", "hello")
            assert isinstance(failure, RasaFailure)
            assert (failure.reason, failure.detail) == ("unreachable", "ConnectError")
        finally:
            await client.aclose()

    run(body)


def test_a_sender_stays_on_its_replica_and_senders_spread_over_all() -> None:
    async def body() -> None:
        stubs = await started("ok", "ok", "ok")
        client = RasaClient([s.url for s in stubs], "t", 5.0)
        try:
            for _ in range(3):
                for i in range(30):
                    reply = await client.turn(f"hcp-{i}", "hi")
                    assert isinstance(reply, RasaReply)
            for stub in stubs:
                assert stub.senders, "every replica takes some conversations"
                for sender in set(stub.senders):
                    assert stub.senders.count(sender) == 3, "a conversation's turns all went to one replica"
        finally:
            await client.aclose()
            for s in stubs:
                await s.stop()

    run(body)


def test_a_replica_marked_down_is_skipped_until_its_backoff_ends() -> None:
    async def body() -> None:
        clock = FakeClock()
        port = dead_port()
        (ok,) = await started("ok")
        client = RasaClient([f"http://127.0.0.1:{port}", ok.url], "t", 5.0, backoff=5.0, clock=clock)
        revived = StubRasa("ok", port=port)
        try:
            sender = sender_first_on(client, f"http://127.0.0.1:{port}")
            assert isinstance(await client.turn(sender, "one"), RasaReply)
            await revived.start()  # it comes back, but is still marked down
            second = await client.turn(sender, "two")
            assert isinstance(second, RasaReply) and second.replica == ok.url
            assert revived.senders == []
            clock.now += 5.1
            third = await client.turn(sender, "three")
            assert isinstance(third, RasaReply) and third.replica == revived.url
            assert revived.senders == [sender] and ok.senders == [sender, sender]
        finally:
            await client.aclose()
            await ok.stop()
            await revived.stop()

    run(body)


def test_active_health_marks_a_replica_without_a_model_down() -> None:
    async def body() -> None:
        ok, no_model = await started("ok", "error")
        client = RasaClient([no_model.url, ok.url], "t", 5.0, health_interval=30.0)
        try:
            sender = sender_first_on(client, no_model.url)
            statuses = await client.check_health()
            assert [s.ok for s in statuses] == [False, True]
            assert [r.url for r in client.order(sender)] == [ok.url, no_model.url]
            reply = await client.turn(sender, "x")
            assert isinstance(reply, RasaReply) and reply.replica == ok.url
            assert no_model.senders == []
        finally:
            await client.aclose()
            await ok.stop()
            await no_model.stop()

    run(body)


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "complaint"), [
    ("http://127.0.0.1:5005,,http://127.0.0.1:5006", "blank"),
    ("http://127.0.0.1:5005, ", "blank"),
    ("http://127.0.0.1:5005,http://127.0.0.1:5005/", "listed twice"),
    ("grpc://127.0.0.1:5005", "not an http(s) base URL"),
    ("127.0.0.1:5005", "not an http(s) base URL"),
    ("http://127.0.0.1:port", "not an http(s) base URL"),
])
def test_a_bad_replica_list_is_a_settings_error_that_says_why(value: str, complaint: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_RASA_URLS", value)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert complaint in str(err.value)


def test_the_replica_list_falls_back_to_the_single_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_RASA_URL", "http://rasa:5005/")
    assert Settings().rasa_replica_urls == ["http://rasa:5005"]
    monkeypatch.setenv("CONCIERGE_RASA_URLS", " http://rasa-1:5005 ,http://rasa-2:5005/")
    assert Settings().rasa_replica_urls == ["http://rasa-1:5005", "http://rasa-2:5005"]


# -- readiness -------------------------------------------------------------------------------------


def _rasa_readiness(engine: Engine, settings: Settings, urls: list[str]) -> dict[str, Any]:
    from api.app import create_app

    app = create_app(settings.model_copy(update={"rasa_urls": ",".join(urls)}), engine=engine,
                     warm_knowledge=False)
    with TestClient(app) as client:
        check: dict[str, Any] = client.get("/readyz").json()["checks"]["rasa"]
        return check


def test_ready_while_one_replica_of_two_has_a_model(engine: Engine, settings: Settings) -> None:
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        ok = asyncio.run_coroutine_threadsafe(StubRasa("ok").start(), loop).result(5)
        down = f"http://127.0.0.1:{dead_port()}"
        check = _rasa_readiness(engine, settings, [down, ok.url])
        assert check["ok"] is True and check["replicas"] == {down: False, ok.url: True}
        assert check["model"] == "stub.tar.gz"
        asyncio.run_coroutine_threadsafe(ok.stop(), loop).result(5)
        check = _rasa_readiness(engine, settings, [down, ok.url])
        assert check["ok"] is False and check["replicas"] == {down: False, ok.url: False}
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_with_every_replica_down_the_hcp_gets_the_fallback_and_the_offer_of_a_person(
        engine: Engine, settings: Settings) -> None:
    from api.app import create_app
    from api.conversations.copy import RASA_FALLBACK
    from api.pipeline.turn import null_safety_hook

    urls = ",".join(f"http://127.0.0.1:{dead_port()}" for _ in range(3))
    app = create_app(settings.model_copy(update={"rasa_urls": urls}), engine=engine, safety_hook=null_safety_hook,
                     warm_knowledge=False)
    with TestClient(app) as client:
        sid = client.post("/api/webchat/sessions").json()["session_id"]
        res = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "I need a rep"})
        assert res.status_code == 200
        (reply,) = res.json()["messages"]
        assert reply["text"] == RASA_FALLBACK
        assert any("request_human" in b["payload"] for b in reply["buttons"]), reply["buttons"]
