"""A small round-robin front for several api processes: TCP, one backend per client connection.

``concierge run --api-processes N`` listens on the public port with this and hands each new
connection to the next api process (``concierge front`` does the same in docker-compose). It copies
bytes both ways and never reads HTTP, so streaming answers (the web chat's and consoles' event
streams) pass unchanged and a connection stays on its api process for its whole life (keep-alive
included). A backend that refuses the connection (stopped, restarting) is skipped for a short while
and the connection goes to the next one; with none left the client gets a plain ``503``.

A backend named by host name is resolved again every few seconds, and every address it resolves to
is a backend of its own (``api:8000`` in docker-compose is every api replica).

What it cannot do: the api processes see the front's address as the client's, not the browser's.
Behind a proxy that sets ``X-Forwarded-For`` (TLS termination, in production) list the front's
address in ``CONCIERGE_TRUSTED_PROXIES`` as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger("concierge.front")

UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 34\r\n"
               b"connection: close\r\n\r\nno api process is accepting now.\r\n")
CHUNK = 64 * 1024


def parse_backend(text: str) -> tuple[str, int]:
    """``host:port`` → (host, port), with a clear error for anything else."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"backend {text!r} is not host:port (e.g. 127.0.0.1:8010)")
    return host.strip("[]"), int(port)


@dataclass
class Front:
    backends: Sequence[tuple[str, int]]
    connect_timeout: float = 2.0
    down_for: float = 2.0  # a backend that refused is skipped this long
    resolve_every: float = 5.0
    connections: dict[tuple[str, int], int] = field(default_factory=dict)  # accepted per backend address
    _next: int = 0
    _down: dict[tuple[str, int], float] = field(default_factory=dict)
    _resolved: list[tuple[str, int]] = field(default_factory=list)
    _resolved_at: float = -1e9
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, host: str, port: int) -> asyncio.Server:
        if not self.backends:
            raise ValueError("the front needs at least one backend")
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        return self._server

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def targets(self) -> list[tuple[str, int]]:
        """Every backend address (host names resolved, all their addresses), cached ``resolve_every`` s."""
        now = time.monotonic()
        if now - self._resolved_at < self.resolve_every and self._resolved:
            return self._resolved
        loop = asyncio.get_running_loop()
        found: list[tuple[str, int]] = []
        for host, port in self.backends:
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                log.warning("front: cannot resolve %s (%s)", host, exc)
                continue
            for info in infos:
                address = (str(info[4][0]), port)
                if address not in found:
                    found.append(address)
        if found:
            self._resolved, self._resolved_at = found, now
        return self._resolved or list(self.backends)

    async def _connect(self) -> tuple[tuple[str, int], asyncio.StreamReader, asyncio.StreamWriter] | None:
        targets = await self.targets()
        start = self._next
        self._next += 1
        now = time.monotonic()
        ordered = [targets[(start + k) % len(targets)] for k in range(len(targets))]
        # Healthy backends in round-robin order first; the ones that refused lately only as a last resort.
        ordered = [t for t in ordered if self._down.get(t, 0) <= now] + \
                  [t for t in ordered if self._down.get(t, 0) > now]
        for target in ordered:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                if self._down.get(target, 0) <= now:
                    log.warning("front: backend %s:%d refused (%s); skipping it for %gs", *target,
                                type(exc).__name__, self.down_for)
                self._down[target] = time.monotonic() + self.down_for
                continue
            self._down.pop(target, None)
            self.connections[target] = self.connections.get(target, 0) + 1
            return target, reader, writer
        return None

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            picked = await self._connect()
            if picked is None:
                with contextlib.suppress(ConnectionError, OSError):
                    client_w.write(UNAVAILABLE)
                    await client_w.drain()
                return
            _, upstream_r, upstream_w = picked
            to_client = asyncio.create_task(_pipe(upstream_r, client_w))
            to_upstream = asyncio.create_task(_pipe(client_r, upstream_w))
            done, _ = await asyncio.wait({to_client, to_upstream}, return_when=asyncio.FIRST_COMPLETED)
            if to_upstream in done and to_upstream.result():
                # The client finished sending (half-close): the answer may still be on its way.
                await to_client
            for t in (to_client, to_upstream):
                t.cancel()
            await asyncio.gather(to_client, to_upstream, return_exceptions=True)
        except asyncio.CancelledError:
            pass
        finally:
            for w in (client_w, upstream_w):
                if w is not None:
                    w.close()
            self._tasks.discard(task)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> bool:
    """Copy until ``src`` ends; pass the end on. True when it ended cleanly, False on a broken connection."""
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
        return True
    except (ConnectionError, OSError):
        return False


async def serve(host: str, port: int, backends: Sequence[tuple[str, int]], stop: asyncio.Event) -> None:
    front = Front(backends)
    await front.start(host, port)
    log.info("front on %s:%d -> %s", host, port, ", ".join(f"{h}:{p}" for h, p in backends))
    try:
        await stop.wait()
    finally:
        await front.close()
