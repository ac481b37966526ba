"""Rate limits on the web chat: a flood from one session or one address is refused early (429 +
Retry-After) and never reaches a turn; everybody else is unaffected. Shared through Redis across
api processes when it is configured (the machine's Redis), in-process otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.conversations.models import Message
from api.ratelimit import MemoryLimiter, RedisLimiter
from api.settings import Settings
from tests.conftest import free_port

REDIS = "redis://127.0.0.1:6379/0"


def _address() -> str:
    """An address no other test (or other run on this machine's Redis) uses."""
    return f"198.18.{random.randint(0, 255)}.{random.randint(1, 254)}"


# The app sits behind a proxy on loopback (as in production behind a load balancer): each "client"
# is the address the proxy passes on. Slow refill, so a slow test machine does not blur the counts.
SLOW = {"rate_limits": True, "trusted_proxies": ["127.0.0.0/8"], "rate_messages_per_min": 1.0,
        "rate_client_messages_per_min": 1.0, "rate_sessions_per_min": 1.0}


class Client:
    def __init__(self, app_client: TestClient, address: str) -> None:
        self.http = app_client
        self.address = address

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        headers = {**dict(kwargs.pop("headers", {}) or {}), "x-forwarded-for": self.address}  # type: ignore[call-overload]
        return self.http.post(path, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.fixture()
def make_app(open_app: Callable[..., TestClient], settings: Settings) -> Callable[..., TestClient]:
    """An api behind a proxy on loopback (as in production behind a load balancer): each "client" is
    the address the proxy passes on in X-Forwarded-For."""

    def make(**overrides: object) -> TestClient:
        return open_app(settings.model_copy(update={**SLOW, **overrides}), client=("127.0.0.1", 50000))

    return make


def _session(client: Client) -> str:
    r = client.post("/api/webchat/sessions")
    assert r.status_code == 201, r.text
    return str(r.json()["session_id"])


def _send(client: Client, secret: str, text: str) -> int:
    return client.post("/api/webchat/messages", json={"text": text}, headers={"X-Chat-Session": secret}).status_code


def _stored(engine: Engine, marker: str) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).select_from(Message).where(
            Message.body.contains(marker), Message.direction == "in")) or 0)


def test_the_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    limiter = MemoryLimiter()
    assert [limiter.hit_now("k", 60, 3, now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit_now("k", 60, 3, now=100.0) == pytest.approx(1.0)     # one token a second
    assert limiter.hit_now("k", 60, 3, now=101.0) == 0.0
    assert limiter.hit_now("other", 60, 3, now=101.0) == 0.0                # keys are independent


def test_a_session_flooding_messages_is_refused_early_and_others_are_not(
        make_app: Callable[..., TestClient], engine: Engine) -> None:
    app = make_app()
    flooder, neighbour = Client(app, _address()), Client(app, _address())
    secret, other = _session(flooder), _session(neighbour)
    marker = uuid.uuid4().hex[:8]
    codes = [_send(flooder, secret, f"{marker} {i}") for i in range(14)]
    assert codes[:10] == [200] * 10 and set(codes[10:]) == {429}       # burst 10 per session
    refused = flooder.post("/api/webchat/messages", json={"text": "again"}, headers={"X-Chat-Session": secret})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited" and "not sent" in refused.json()["error"]["message"]
    assert _stored(engine, marker) == 10                                # refused ones never stored
    assert _send(neighbour, other, "my own question") == 200


def test_one_address_with_many_sessions_is_limited_as_a_whole(make_app: Callable[..., TestClient]) -> None:
    app = make_app(rate_sessions_per_min=600.0)
    crowd = Client(app, _address())
    statuses = []
    for _ in range(5):
        secret = _session(crowd)
        statuses += [_send(crowd, secret, "hello") for _ in range(9)]    # within each session's burst
    assert statuses.count(200) == 40 and statuses.count(429) == 5        # the address's burst is 40
    stranger = Client(app, _address())
    assert _send(stranger, _session(stranger), "hi") == 200


def test_new_sessions_per_address_are_limited(make_app: Callable[..., TestClient]) -> None:
    app = make_app()
    opener = Client(app, _address())
    codes = [opener.post("/api/webchat/sessions").status_code for _ in range(12)]
    assert codes[:10] == [201] * 10 and codes[10:] == [429, 429]


def test_two_api_processes_share_the_limits_through_redis(make_app: Callable[..., TestClient]) -> None:
    first, second = make_app(redis_url=REDIS), make_app(redis_url=REDIS)
    address = _address()
    secret = _session(Client(first, address))
    codes = [_send(Client(first if i % 2 else second, address), secret, f"turn {i}") for i in range(12)]
    assert codes.count(200) == 10 and codes[-2:] == [429, 429]            # one bucket across both


def test_redis_away_falls_back_to_this_processes_limits_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    async def three_hits() -> list[float]:
        limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")       # nothing listens there
        try:
            return [await limiter.hit("k", 60, 2) for _ in range(3)]
        finally:
            await limiter.close()

    with caplog.at_level(logging.WARNING, logger="concierge.ratelimit"):
        waits = asyncio.run(three_hits())
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0                       # still limited, in process
    assert len([r for r in caplog.records if "Redis unavailable" in r.getMessage()]) == 1
