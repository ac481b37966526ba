"""Loopback stand-ins for Rasa's REST channel (``POST /webhooks/rest/webhook``, ``GET /status``).

``StubRasa``: one replica on a real socket (asyncio, in the test's own event loop), for the api's
replica failover. It answers in one way — ``ok`` (a reply naming the stub), ``slow`` (reads the
request, never answers), ``error`` (HTTP 500), ``cut`` (reads the request, closes without an answer) —
and ``GET /status`` with a loaded model (``ok``) or without one (the others). It counts the turns that
reached it. A port nothing listens on (``dead_port``) stands for a replica that is down.

``ClusterRasa``: an app to serve (uvicorn) for tests with real api processes. It answers ``#<n> <text>``,
where ``n`` counts this sender's turns, and records every call in arrival order with the caller's name:
give each process of a test its own base URL ``http://host:port/<name>``, and the log says which process
ran each turn. It notes a sender whose turns overlap (one conversation processed twice at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.conftest import free_port

# ``GET /status`` of a Rasa server with a model loaded.
STATUS = {"model_id": "stub", "model_file": "stub.tar.gz"}


def dead_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    return free_port()


@dataclass
class StubRasa:
    mode: str  # ok | slow | error | cut
    port: int = 0
    senders: list[str] = field(default_factory=list)  # one per turn that reached this stub
    _server: asyncio.Server | None = None
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> StubRasa:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._open):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if method == "GET" and path.startswith("/status"):
                    status = STATUS if self.mode == "ok" else {}
                    await self._answer(writer, 200, json.dumps(status))
                    continue
                self.senders.append(json.loads(body)["sender"])
                if self.mode == "slow":
                    await asyncio.sleep(3600)
                if self.mode == "cut":
                    return
                if self.mode == "error":
                    await self._answer(writer, 500, "boom")
                    continue
                await self._answer(writer, 200, json.dumps([{"recipient_id": "x", "text": f"from {self.port}"}]))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
        data = text.encode()
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
                     .encode() + data)
        await writer.drain()


@dataclass(frozen=True)
class Arrival:
    sender: str
    text: str
    seq: int
    caller: str


@dataclass
class ClusterRasa:
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
            return JSONResponse(STATUS)

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
