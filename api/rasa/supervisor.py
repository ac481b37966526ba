"""``concierge run`` keeps Rasa running (and, with ``--api-processes``/``--rasa-replicas``, every api
process, Rasa replica and worker it starts): restarts it when it dies or stops answering, with backoff.

- Rasa runs in its own process group, and dies with its parent (``PR_SET_PDEATHSIG`` on Linux): a
  ``concierge run`` killed with SIGKILL leaves no Rasa behind. Stopping kills the whole group.
- A pid file (``var/rasa.pid``) names the Rasa this machine's last run started. If that run crashed
  and its Rasa is still alive, it is stopped before a new one starts; a port held by any other
  program is refused with a clear message (never silently "reused").
- A watcher thread: a Rasa that exits is started again after 1 s, 2 s, 4 s … up to ``backoff_max``
  (reset once it has stayed up a minute); a Rasa that stops answering ``/status`` (frozen, say) for
  ``unhealthy_after`` probes in a row is killed and restarted the same way. While Rasa is away the
  api answers with its own fallback and offers a person (``api.pipeline.turn``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

log = logging.getLogger("concierge.rasa.supervisor")

OUR_MARK = "concierge_rasa_run"  # in the command line of every Rasa this project starts


class PortTaken(RuntimeError):
    pass


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the process that started it dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def listener_of(port: int) -> str:
    """Who listens on ``port`` (best effort, from /proc): "pid N: command line", or ""."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return ""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return f"pid {proc.name}: {_cmdline(int(proc.name))[:200]}"
    return ""


def stop_group(proc: subprocess.Popen[bytes], *, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class ProcessSupervisor:
    """Keeps one child process running (see the module docstring); ``probe`` says whether it answers.

    ``url`` is where it listens (its port is refused if a stranger holds it); ``mark`` is a string in
    the command line of every process of this kind we start (an orphan named in ``pidfile`` is ours
    only if it carries it).
    """

    def __init__(self, spawn: Callable[[], subprocess.Popen[bytes]], *, name: str, url: str | None,
                 probe: Callable[[], bool], pidfile: Path, mark: str, port_advice: str = "",
                 probe_interval: float = 5.0, unhealthy_after: int = 6, backoff_max: float = 60.0,
                 ready_timeout: float = 420.0, stable_after: float = 60.0, stop_grace: float = 5.0) -> None:
        self.spawn = spawn
        self.name = name
        self.url = url.rstrip("/") if url else None
        self._probe = probe
        self.pidfile = pidfile
        self.mark = mark
        self.port_advice = port_advice
        self.probe_interval = probe_interval
        self.unhealthy_after = unhealthy_after
        self.backoff_max = backoff_max
        self.ready_timeout = ready_timeout
        self.stable_after = stable_after
        self.stop_grace = stop_grace  # SIGTERM to SIGKILL when it is restarted (a frozen one never ends on SIGTERM)
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0

    @property
    def port(self) -> int:
        assert self.url is not None
        return int(self.url.rsplit(":", 1)[-1].split("/")[0])

    @property
    def host(self) -> str:
        assert self.url is not None
        return self.url.split("://", 1)[-1].rsplit(":", 1)[0]

    # -- start / stop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Clear an orphan of ours, refuse a stranger on the port, start the process and watch it."""
        self.check_port()
        self._launch()
        self._thread = threading.Thread(target=self._watch, name=f"{self.name}-supervisor", daemon=True)
        self._thread.start()

    def check_port(self) -> None:
        """Clear an orphan of ours; refuse a stranger on our port (``PortTaken``, naming it)."""
        if self.reap_orphan() and self.url is not None:
            # A dying process gives up its memory (and its command line) before its sockets: give the
            # port a moment to be released before calling its holder a stranger.
            deadline = time.monotonic() + 10
            while port_in_use(self.host, self.port) and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.url is not None and port_in_use(self.host, self.port):
            who = listener_of(self.port)
            raise PortTaken(f"port {self.port} ({self.url}) is already in use" + (f" by {who}" if who else "")
                            + f"; stop that program, or give {self.name} another port" + (
                                f" with {self.port_advice}" if self.port_advice else ""))

    def reap_orphan(self) -> bool:
        """A process left running by a run of ours that died: stop it. True if there was one."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        if not _alive(pid) or self.mark not in _cmdline(pid):
            self.pidfile.unlink(missing_ok=True)
            return False
        log.warning("stopping %s (pid %d) left running by an earlier run", self.name, pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and self.mark in _cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid) and self.mark in _cmdline(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return True

    def _launch(self) -> None:
        self._ready.clear()
        self.proc = self.spawn()
        self._started_at = time.monotonic()
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text(f"{self.proc.pid}\n")

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.proc is not None:
            stop_group(self.proc)
        self.pidfile.unlink(missing_ok=True)

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- watching --------------------------------------------------------------------------------

    def probe(self) -> bool:
        return self._probe()

    def _sleep(self, seconds: float) -> bool:
        """False when stopping."""
        return not self._stopping.wait(seconds)

    def _watch(self) -> None:
        backoff = 1.0
        failures = 0
        while self._sleep(0.5 if not self._ready.is_set() else self.probe_interval):
            proc = self.proc
            assert proc is not None
            code = proc.poll()
            trouble = ""
            if code is not None:
                trouble = f"{self.name} exited (code {code})"
            elif not self._ready.is_set():
                if self.probe():
                    self._ready.set()
                    failures = 0
                    if self.restarts:
                        log.warning("%s is back (restart %d)", self.name, self.restarts)
                elif time.monotonic() - self._started_at > self.ready_timeout:
                    trouble = f"{self.name} not ready after {self.ready_timeout:.0f}s"
            elif self.probe():
                failures = 0
                if time.monotonic() - self._started_at > self.stable_after:
                    backoff = 1.0
            else:
                failures += 1
                if failures >= self.unhealthy_after:
                    trouble = f"{self.name} has not answered for {failures} probes in a row"
            if not trouble:
                continue
            log.error("%s; restarting it in %gs", trouble, backoff)
            stop_group(proc, timeout=self.stop_grace)
            if not self._sleep(backoff):
                return
            backoff = min(backoff * 2, self.backoff_max)
            failures = 0
            self.restarts += 1
            try:
                self._launch()
            except Exception:
                log.exception("could not start %s; trying again", self.name)


def rasa_probe(url: str, token: str, timeout: float = 2.0) -> Callable[[], bool]:
    """Rasa answers ``/status`` with a loaded model (within ``timeout`` s)."""
    def probe() -> bool:
        try:
            r = httpx.get(f"{url.rstrip('/')}/status", params={"token": token}, timeout=timeout)
            return r.status_code == 200 and bool(r.json().get("model_id") or r.json().get("model_file"))
        except (httpx.HTTPError, ValueError):
            return False
    return probe


class RasaSupervisor(ProcessSupervisor):
    """One Rasa server, restarted when it dies or stops answering ``/status``."""

    def __init__(self, spawn: Callable[[], subprocess.Popen[bytes]], *, url: str, token: str, pidfile: Path,
                 name: str = "Rasa", port_advice: str = "CONCIERGE_RASA_URL", probe_interval: float = 5.0,
                 unhealthy_after: int = 6, backoff_max: float = 60.0, ready_timeout: float = 420.0,
                 stable_after: float = 60.0, probe_timeout: float = 2.0, stop_grace: float = 5.0) -> None:
        super().__init__(spawn, name=name, url=url, probe=rasa_probe(url, token, probe_timeout), pidfile=pidfile,
                         mark=OUR_MARK, port_advice=port_advice, probe_interval=probe_interval,
                         unhealthy_after=unhealthy_after, backoff_max=backoff_max, ready_timeout=ready_timeout,
                         stable_after=stable_after, stop_grace=stop_grace)
        self.token = token
