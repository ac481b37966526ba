"""An ASGI app served by uvicorn in a background thread of this process.

Used for the WhatsApp sandbox (``concierge run --whatsapp-sandbox``), the fake Twilio of the scale-out
scenario (``benchmarks/scale_scenario.py``) and the tests' live servers. ``start`` binds the listening
socket itself, so port 0 means any free port, ``url`` is known once it returns and a taken port is
refused at once with an error that says so; it returns when uvicorn has started (lifespan startup
included). ``stop`` asks uvicorn to finish and joins the thread.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import uvicorn


class ThreadedServer:
    """``app`` served on ``host:port`` by uvicorn in a daemon thread named ``name``.

    ``label`` names the server in errors ("<label> did not start"); ``config`` goes to ``uvicorn.Config``
    (``log_level`` defaults to ``"warning"``). ``server`` is the ``uvicorn.Server``: its config may be
    changed before ``start``.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "uvicorn",
                 label: str = "the server", **config: Any) -> None:
        import uvicorn

        self.host, self.port, self.name, self.label = host, port, name, label
        self.url = f"http://{host}:{port}" if port else ""
        config.setdefault("log_level", "warning")
        self.server: uvicorn.Server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **config))
        self.thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self, timeout: float = 30.0) -> Self:
        """Listen and serve; returns once uvicorn has started, raises RuntimeError when it cannot."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"{self.label} cannot listen on {self.host}:{self.port}: {exc.strerror}") from exc
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self.url = f"http://{self.host}:{self.port}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name=self.name,
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                self.stop(timeout=5)
                raise RuntimeError(f"{self.label} did not start: it stopped while starting (see the log above)")
            if time.monotonic() > deadline:
                self.stop(timeout=5)
                raise RuntimeError(f"{self.label} did not start within {timeout:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask uvicorn to finish (it ends its connections gracefully) and wait up to ``timeout`` s for it."""
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=timeout)
        if self._sock is not None and (self.thread is None or not self.thread.is_alive()):
            self._sock.close()  # uvicorn closes it when it stops; this covers a server that never started
