"""The round-robin front (api/front.py) on real loopback sockets: each new connection goes to the next
backend, a backend that refuses is skipped, streams pass through unbuffered, ends are passed on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from api.front import UNAVAILABLE, Front, parse_backend
from tests.fakes.rasa_stub import dead_port


class Backend:
    """Answers each connection with its name, then echoes what it receives until the client's end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.accepted = 0
        self.ended = asyncio.Event()  # a connection to it was closed by the other side
        self.server: asyncio.Server | None = None

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return "127.0.0.1", int(self.server.sockets[0].getsockname()[1])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.write(f"{self.name}\n".encode())
        await writer.drain()
        received = 0
        while data := await reader.read(1024):
            received += len(data)
            writer.write(data)
            await writer.drain()
        # The client's half-close reached us: answer after it, as an HTTP server finishes a response.
        writer.write(f"got {received}\n".encode())
        await writer.drain()
        writer.close()
        self.ended.set()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))  # type: ignore[arg-type]


async def first_line(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    line = (await reader.readline()).decode().strip()
    writer.close()
    return line


def test_connections_go_to_the_backends_in_turn() -> None:
    async def body() -> None:
        backends = [await Backend(f"api-{i}").start() for i in range(3)]
        front = Front([b.address for b in backends])
        await front.start("127.0.0.1", 0)
        try:
            names = [await first_line(front.port) for _ in range(6)]
            assert names == ["api-0", "api-1", "api-2", "api-0", "api-1", "api-2"]
            assert [b.accepted for b in backends] == [2, 2, 2]
        finally:
            await front.close()
            for b in backends:
                await b.stop()

    run(body)


def test_a_backend_that_refuses_is_skipped_and_nothing_is_lost() -> None:
    async def body() -> None:
        a, b = await Backend("api-a").start(), await Backend("api-b").start()
        front = Front([a.address, ("127.0.0.1", dead_port()), b.address])
        await front.start("127.0.0.1", 0)
        try:
            names = [await first_line(front.port) for _ in range(6)]
            assert set(names) == {"api-a", "api-b"} and len(names) == 6
            assert a.accepted + b.accepted == 6
        finally:
            await front.close()
            await a.stop()
            await b.stop()

    run(body)


def test_with_every_backend_down_the_client_gets_a_503() -> None:
    async def body() -> None:
        front = Front([("127.0.0.1", dead_port()), ("127.0.0.1", dead_port())])
        await front.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
            assert await reader.read() == UNAVAILABLE
            writer.close()
        finally:
            await front.close()

    run(body)


def test_bytes_stream_both_ways_unbuffered_and_the_client_s_end_is_passed_on() -> None:
    async def body() -> None:
        backend = await Backend("api-s").start()
        front = Front([backend.address])
        await front.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
            assert await reader.readline() == b"api-s\n"
            for i in range(3):  # each piece comes back before the next is sent: nothing waits in a buffer
                writer.write(f"event {i}\n".encode())
                await writer.drain()
                assert await reader.readline() == f"event {i}\n".encode()
            writer.write_eof()
            assert await reader.readline() == b"got 24\n"
            assert await reader.read() == b""
            writer.close()
            await asyncio.wait_for(backend.ended.wait(), 5)
        finally:
            await front.close()
            await backend.stop()

    run(body)


def test_a_client_that_goes_away_closes_its_backend_connection() -> None:
    async def body() -> None:
        closed = asyncio.Event()

        async def streaming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:  # an endless event stream, as the web chat's
                while True:
                    writer.write(b"data: tick\n\n")
                    await writer.drain()
                    await asyncio.sleep(0.05)
            except (ConnectionError, OSError):
                closed.set()

        server = await asyncio.start_server(streaming, "127.0.0.1", 0)
        front = Front([("127.0.0.1", int(server.sockets[0].getsockname()[1]))])
        await front.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
            assert await reader.readuntil(b"\n\n") == b"data: tick\n\n"
            writer.transport.abort()  # the browser tab is closed
            await asyncio.wait_for(closed.wait(), 10)
        finally:
            await front.close()
            server.close()

    run(body)


@pytest.mark.parametrize("text", ["api", "api:", ":8000", "api:eighty", "api:70000"])
def test_a_backend_that_is_not_host_and_port_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_backend(text)


def test_a_backend_host_name_stands_for_every_address_it_resolves_to() -> None:
    async def body() -> None:
        front = Front([("localhost", 8000)])
        targets = await front.targets()
        assert ("127.0.0.1", 8000) in targets
        assert all(port == 8000 for _, port in targets)

    run(body)
