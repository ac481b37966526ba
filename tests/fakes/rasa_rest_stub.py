"""A stub Rasa REST server on loopback, for tests with real api processes.

``POST /webhooks/rest/webhook`` answers ``#<n> <text>``, where ``n`` counts this sender's turns, and
records every call in arrival order with the caller's name: give each process of a test its own base
URL ``http://host:port/<name>``, and the log says which process ran each turn. It notes a sender whose
turns overlap (one conversation processed twice at once). ``GET /status`` answers like Rasa's.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass(frozen=True)
class Arrival:
    sender: str
    text: str
    seq: int
    caller: str


@dataclass
class RasaStub:
    delay: float = 0.0  # seconds each turn takes (turns in flight when a process is killed)
    arrivals: list[Arrival] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    _seq: dict[str, int] = field(default_factory=dict)
    _active: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/status")
        @app.get("/{caller}/status")
        async def status() -> JSONResponse:
            return JSONResponse({"model_id": "stub", "model_file": "stub.tar.gz"})

        @app.post("/webhooks/rest/webhook")
        async def anonymous(request: Request) -> JSONResponse:
            return await webhook(request, "")

        @app.post("/{caller}/webhooks/rest/webhook")
        async def webhook(request: Request, caller: str) -> JSONResponse:
            body = await request.json()
            sender, text = str(body["sender"]), str(body["message"])
            with self._lock:
                if sender in self._active:
                    self.overlaps.append(sender)
                self._active.add(sender)
                seq = self._seq.get(sender, 0) + 1
                self._seq[sender] = seq
                self.arrivals.append(Arrival(sender, text, seq, caller))
            try:
                if self.delay:
                    await asyncio.sleep(self.delay)
                return JSONResponse([{"recipient_id": sender, "text": f"#{seq} {text}"}])
            finally:
                with self._lock:
                    self._active.discard(sender)

        return app

    def log(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)
