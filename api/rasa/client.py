"""Rasa as a component: the REST channel for turns, the HTTP API for readiness.

Rasa can be slow, answer ``[]`` or be down; every failure comes back as ``RasaFailure``
with a reason, never as an exception the worker has to guess about.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class RasaReply:
    messages: list[dict[str, Any]] = field(default_factory=list)
    elapsed_ms: float = 0.0


@dataclass
class RasaFailure:
    reason: str  # timeout | unreachable | http_error | bad_response | empty
    detail: str = ""
    elapsed_ms: float = 0.0


class RasaClient:
    def __init__(self, base_url: str, token: str, timeout: float, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            transport=transport,
            # Rasa's server (Sanic) drops idle keep-alive connections after 5 s; reusing one it has
            # just closed fails the turn with a ReadError, so ours expire first.
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=3.0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def turn(self, sender: str, text: str, metadata: dict[str, Any] | None = None) -> RasaReply | RasaFailure:
        """One user message through Rasa's REST channel, bounded by the deadline."""
        started = time.perf_counter()
        body = {"sender": sender, "message": text, "metadata": metadata or {}}

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            # The overall deadline, not only per-read: a server trickling bytes still fails in time.
            resp = await asyncio.wait_for(
                self._client.post("/webhooks/rest/webhook", json=body), timeout=self.timeout
            )
        except (TimeoutError, httpx.TimeoutException):
            return RasaFailure("timeout", f"no answer within {self.timeout:g}s", elapsed())
        except httpx.TransportError as exc:
            return RasaFailure("unreachable", type(exc).__name__, elapsed())
        if resp.status_code != 200:
            return RasaFailure("http_error", f"HTTP {resp.status_code}", elapsed())
        try:
            data = resp.json()
        except ValueError:
            return RasaFailure("bad_response", "not JSON", elapsed())
        if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
            return RasaFailure("bad_response", "not a list of messages", elapsed())
        if not data:
            return RasaFailure("empty", "Rasa returned no messages", elapsed())
        return RasaReply(messages=data, elapsed_ms=elapsed())

    async def status(self) -> dict[str, Any]:
        """Rasa's /status (needs the auth token); raises on failure."""
        resp = await self._client.get("/status", params={"token": self.token}, timeout=2.0)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data
