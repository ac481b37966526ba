"""Loopback stand-ins for Rasa replicas on real sockets (asyncio, in the test's own event loop).

Each stub answers the REST channel in one way — ``ok`` (a reply naming the stub), ``slow`` (reads the
request, never answers), ``error`` (HTTP 500), ``cut`` (reads the request, closes without an answer) —
and ``GET /status`` with a loaded model (``ok``) or without one (the others). It counts the turns
that reached it. A port nothing listens on stands for a replica that is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass, field


def dead_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
                    status = {"model_id": "stub", "model_file": "stub.tar.gz"} if self.mode == "ok" else {}
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
