"""``concierge run`` supervises Rasa: restarted after a crash or a freeze, never an orphan left behind,
never a stranger's port silently "reused".

Real processes and signals; the process is a stand-in that answers Rasa's ``/status`` (a real Rasa
takes a minute to start, and what is tested here is the supervision, not Rasa).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.rasa.supervisor import OUR_MARK, PortTaken, RasaSupervisor, die_with_parent
from tests.conftest import free_port

STAND_IN = '''
import http.server, json, sys
class Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"model_id": "stand-in"}).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Status).serve_forever()
'''


@pytest.fixture()
def stand_in(tmp_path: Path) -> Path:
    script = tmp_path / f"{OUR_MARK}_stand_in.py"   # our mark in the command line, as the real one has
    script.write_text(STAND_IN)
    return script


def _spawner(script: Path, port: int) -> Callable[[], subprocess.Popen[bytes]]:
    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(script), str(port)], start_new_session=True,
                                preexec_fn=die_with_parent)
    return spawn


@pytest.fixture()
def supervised(stand_in: Path, tmp_path: Path) -> Iterator[RasaSupervisor]:
    port = free_port()
    # A stand-in answers in milliseconds: a 1 s probe deadline and a 1 s SIGTERM grace (instead of 2 s and
    # 5 s) take a frozen one through the same steps (3 unanswered probes, SIGTERM, SIGKILL) 7 s sooner.
    sup = RasaSupervisor(_spawner(stand_in, port), url=f"http://127.0.0.1:{port}", token="t",
                         pidfile=tmp_path / "rasa.pid", probe_interval=0.2, unhealthy_after=3, backoff_max=1.0,
                         probe_timeout=1.0, stop_grace=1.0)
    sup.start()
    assert sup.wait_ready(20)
    yield sup
    sup.stop()


def _until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.1)


def test_a_killed_rasa_is_started_again(supervised: RasaSupervisor) -> None:
    first = supervised.proc
    assert first is not None
    os.killpg(first.pid, signal.SIGKILL)
    _until(lambda: supervised.restarts == 1 and supervised.probe())
    assert supervised.proc is not None and supervised.proc.pid != first.pid
    assert (supervised.pidfile.read_text().strip()) == str(supervised.proc.pid)


def test_a_frozen_rasa_is_killed_and_started_again(supervised: RasaSupervisor) -> None:
    first = supervised.proc
    assert first is not None
    os.killpg(first.pid, signal.SIGSTOP)             # alive, but answers nothing
    _until(lambda: supervised.restarts == 1 and supervised.probe())
    assert first.poll() is not None                  # the frozen one is gone, not left stopped


def test_a_port_held_by_another_program_is_refused_with_its_name(stand_in: Path, tmp_path: Path) -> None:
    port = free_port()
    stranger = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spawned: list[int] = []
    try:
        _until(lambda: _listening(port))
        sup = RasaSupervisor(lambda: spawned.append(1) or _spawner(stand_in, port)(),  # type: ignore[func-returns-value]
                             url=f"http://127.0.0.1:{port}", token="t", pidfile=tmp_path / "rasa.pid")
        with pytest.raises(PortTaken, match=rf"port {port} .*in use by pid {stranger.pid}: .*http.server"):
            sup.start()
        assert spawned == []
        assert stranger.poll() is None               # a stranger is never killed
    finally:
        stranger.terminate()
        stranger.wait()


def test_a_rasa_left_by_a_crashed_run_is_stopped_before_a_new_one_starts(stand_in: Path, tmp_path: Path) -> None:
    port = free_port()
    orphan = _spawner(stand_in, port)()
    (tmp_path / "rasa.pid").write_text(f"{orphan.pid}\n")
    _until(lambda: _listening(port))
    sup = RasaSupervisor(_spawner(stand_in, port), url=f"http://127.0.0.1:{port}", token="t",
                         pidfile=tmp_path / "rasa.pid")
    try:
        sup.start()
        assert orphan.wait(timeout=20) is not None
        assert sup.wait_ready(20) and sup.proc is not None and sup.proc.pid != orphan.pid
    finally:
        sup.stop()
    assert not (tmp_path / "rasa.pid").exists()


def test_rasa_dies_with_the_process_that_started_it(stand_in: Path) -> None:
    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "from api.rasa.supervisor import die_with_parent\n"
         f"p = subprocess.Popen([sys.executable, {str(stand_in)!r}, '{port}'], start_new_session=True,"
         " preexec_fn=die_with_parent)\n"
         "print(p.pid, flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    _until(lambda: _listening(port))
    parent.kill()                                     # SIGKILL: no chance to clean up
    parent.wait()
    _until(lambda: not _running(child), timeout=10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status
