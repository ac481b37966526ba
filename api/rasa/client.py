"""Rasa as a component: the REST channel for turns, the HTTP API for readiness.

Rasa can be slow, answer ``[]`` or be down; every failure comes back as ``RasaFailure``
with a reason, never as an exception the worker has to guess about.

Several replicas (``CONCIERGE_RASA_URLS``) share Rasa's SQL tracker store and Redis lock store, so any
of them can take any conversation's next message. A turn goes to the replica the sender hashes to
(rendezvous hashing: its caches stay warm, and only the senders of a replica that goes away move);
correctness never depends on it. A replica that refuses the connection, or does not accept it in
time, is marked down for ``backoff`` seconds and the turn is sent to the next replica, within the
same overall deadline: such a request certainly never reached Rasa. Anything after the request may
have been sent — a read timeout, a connection cut mid-answer, an HTTP error — may already have
advanced the conversation's tracker, so it is never sent again: the turn fails as it always did and
the api answers with its fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from api.settings import Settings

log = logging.getLogger("concierge.rasa.client")

WEBHOOK = "/webhooks/rest/webhook"
CONNECT_TIMEOUT = 2.0


@dataclass
class RasaReply:
    messages: list[dict[str, Any]] = field(default_factory=list)
    elapsed_ms: float = 0.0
    replica: str = ""  # base URL of the replica that answered


@dataclass
class RasaFailure:
    reason: str  # timeout | unreachable | http_error | bad_response | empty
    detail: str = ""
    elapsed_ms: float = 0.0
    replica: str = ""  # the replica the request was sent to ("" when none took it)


@dataclass
class Replica:
    url: str
    down_until: float = 0.0  # monotonic time before which it is skipped (0: healthy)
    marked_down: int = 0  # how many times it was marked down (for logs and tests)

    def is_up(self, now: float) -> bool:
        return self.down_until <= now


@dataclass
class ReplicaStatus:
    url: str
    ok: bool
    model: str | None = None
    error: str = ""


def _rank(url: str, sender: str) -> bytes:
    return hashlib.blake2b(f"{url}\0{sender}".encode(), digest_size=8).digest()


class RasaClient:
    """Turns through one Rasa server or spread over several replicas (see the module docstring)."""

    def __init__(self, base_url: str | Sequence[str], token: str, timeout: float, *,
                 transport: httpx.AsyncBaseTransport | None = None, backoff: float = 5.0,
                 health_interval: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("RasaClient needs at least one Rasa URL")
        self.replicas = [Replica(u.rstrip("/")) for u in urls]
        self.base_url = self.replicas[0].url
        self.token = token
        self.timeout = timeout
        self.backoff = backoff
        self.health_interval = health_interval
        self._clock = clock
        self._health_task: asyncio.Task[None] | None = None
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            transport=transport,
            # Rasa's server (Sanic) drops idle keep-alive connections after 5 s; reusing one it has
            # just closed fails the turn with a ReadError, so ours expire first.
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=3.0),
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> RasaClient:
        return cls(settings.rasa_replica_urls, settings.rasa_token, settings.rasa_timeout, transport=transport,
                   backoff=settings.rasa_replica_backoff_s, health_interval=settings.rasa_health_interval_s)

    async def aclose(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._health_task
            self._health_task = None
        await self._client.aclose()

    # -- choosing a replica ------------------------------------------------------------------------

    def order(self, sender: str) -> list[Replica]:
        """The replicas to try for ``sender``, in order: healthy ones by the sender's hash, then the
        ones marked down (soonest back first) — tried rather than giving up while there is time."""
        ranked = sorted(self.replicas, key=lambda r: _rank(r.url, sender), reverse=True)
        now = self._clock()
        up = [r for r in ranked if r.is_up(now)]
        down = sorted((r for r in ranked if not r.is_up(now)), key=lambda r: r.down_until)
        return up + down

    def mark_down(self, replica: Replica, why: str, seconds: float | None = None) -> None:
        if replica.is_up(self._clock()) and len(self.replicas) > 1:
            log.warning("Rasa replica %s is down (%s); skipping it for %gs", replica.url, why,
                        seconds if seconds is not None else self.backoff)
        replica.down_until = self._clock() + (seconds if seconds is not None else self.backoff)
        replica.marked_down += 1

    def mark_up(self, replica: Replica) -> None:
        if not replica.is_up(self._clock()) and len(self.replicas) > 1:
            log.info("Rasa replica %s is back", replica.url)
        replica.down_until = 0.0

    # -- turns -----------------------------------------------------------------------------------

    async def turn(self, sender: str, text: str, metadata: dict[str, Any] | None = None) -> RasaReply | RasaFailure:
        """One user message through Rasa's REST channel, bounded by the deadline (all tries together)."""
        self._ensure_health_checks()
        started = time.perf_counter()
        body = {"sender": sender, "message": text, "metadata": metadata or {}}

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        refused: list[str] = []
        for replica in self.order(sender):
            remaining = self.timeout - (time.perf_counter() - started)
            if remaining <= 0:
                break
            try:
                # The overall deadline, not only per-read: a server trickling bytes still fails in time.
                resp = await asyncio.wait_for(
                    self._client.post(f"{replica.url}{WEBHOOK}", json=body,
                                      timeout=httpx.Timeout(remaining, connect=min(remaining, CONNECT_TIMEOUT))),
                    timeout=remaining)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing was sent: this replica is away, the next one may take the turn.
                self.mark_down(replica, type(exc).__name__)
                refused.append(f"{replica.url} {type(exc).__name__}")
                continue
            except (TimeoutError, httpx.TimeoutException):
                # Possibly received and processed: never sent again (the fallback answers instead).
                return RasaFailure("timeout", f"no answer within {self.timeout:g}s", elapsed(), replica.url)
            except httpx.TransportError as exc:
                # Cut after the request went out (the replica died mid-turn, say): not sent again either.
                return RasaFailure("unreachable", type(exc).__name__, elapsed(), replica.url)
            self.mark_up(replica)
            return self._read(resp, elapsed(), replica.url)
        if refused and len(refused) == len(self.replicas) == 1:
            return RasaFailure("unreachable", refused[0].rsplit(" ", 1)[1], elapsed(), self.replicas[0].url)
        if refused:
            return RasaFailure("unreachable", f"{len(refused)} of {len(self.replicas)} replicas tried, none "
                                              f"accepted the connection: " + "; ".join(refused), elapsed())
        return RasaFailure("timeout", f"no answer within {self.timeout:g}s", elapsed())

    @staticmethod
    def _read(resp: httpx.Response, elapsed_ms: float, url: str) -> RasaReply | RasaFailure:
        if resp.status_code != 200:
            return RasaFailure("http_error", f"HTTP {resp.status_code}", elapsed_ms, url)
        try:
            data = resp.json()
        except ValueError:
            return RasaFailure("bad_response", "not JSON", elapsed_ms, url)
        if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
            return RasaFailure("bad_response", "not a list of messages", elapsed_ms, url)
        if not data:
            return RasaFailure("empty", "Rasa returned no messages", elapsed_ms, url)
        return RasaReply(messages=data, elapsed_ms=elapsed_ms, replica=url)

    # -- health ----------------------------------------------------------------------------------

    async def _status_of(self, replica: Replica) -> ReplicaStatus:
        try:
            resp = await self._client.get(f"{replica.url}/status", params={"token": self.token}, timeout=2.0)
            resp.raise_for_status()
            data = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            return ReplicaStatus(replica.url, False, error=type(exc).__name__)
        model = data.get("model_file") if isinstance(data, dict) else None
        loaded = isinstance(data, dict) and bool(data.get("model_id") or data.get("model_file"))
        return ReplicaStatus(replica.url, loaded, model=model, error="" if loaded else "no model loaded")

    async def statuses(self) -> list[ReplicaStatus]:
        """Every replica's /status, asked at the same time (readiness: ready when one has a model)."""
        return list(await asyncio.gather(*(self._status_of(r) for r in self.replicas)))

    async def check_health(self) -> list[ReplicaStatus]:
        """Active health: probe every replica, mark the ones without a loaded model down until the next probe."""
        found = await self.statuses()
        for replica, status in zip(self.replicas, found, strict=True):
            if status.ok:
                self.mark_up(replica)
            else:
                self.mark_down(replica, f"/status: {status.error}",
                               seconds=max(self.backoff, self.health_interval + CONNECT_TIMEOUT))
        return found

    def _ensure_health_checks(self) -> None:
        if self.health_interval <= 0 or len(self.replicas) < 2 or self._health_task is not None:
            return
        self._health_task = asyncio.get_running_loop().create_task(self._health_loop(), name="rasa-health")

    async def _health_loop(self) -> None:
        while True:
            try:
                await self.check_health()
            except Exception:
                log.exception("Rasa health probe failed")
            await asyncio.sleep(self.health_interval)
