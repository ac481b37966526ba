"""Real api and worker processes on one PostgreSQL database and Redis, for the multi-process tests.

Each process is the product's own command (``python -m api.cli serve`` / ``worker``) with its own
port and environment; Rasa is ``ClusterRasa`` of ``tests/fakes/rasa_stub.py`` and Twilio the fake, both
served on loopback by the test process. Each process reaches the stub under its own path
(``/<name>``), so the stub's log names the process that ran each turn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent.parent


@dataclass
class Node:
    name: str
    kind: str  # api | worker
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Cluster:
    env: dict[str, str]
    var: Path
    rasa_url: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def apis(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "api"]

    def live_apis(self) -> list[Node]:
        return [n for n in self.apis if n.alive]

    def _spawn(self, name: str, kind: str, extra: dict[str, str]) -> Node:
        log = self.var / f"{name}.log"
        env = {**self.env, **extra, "CONCIERGE_RASA_URL": f"{self.rasa_url}/{name}",
               "CONCIERGE_VAR_DIR": str(self.var / name)}
        command = "serve" if kind == "api" else "worker"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "api.cli", command], cwd=REPO, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        node = Node(name, kind, proc, log)
        self.nodes.append(node)
        return node

    def start_api(self, name: str) -> Node:
        port = free_port()
        node = self._spawn(name, "api", {"CONCIERGE_PORT": str(port)})
        node.url = f"http://127.0.0.1:{port}"
        return node

    def start_worker(self, name: str) -> Node:
        return self._spawn(name, "worker", {})

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while True:
                if not node.alive:
                    raise RuntimeError(f"{node.name} exited ({node.proc.returncode}):\n{node.tail()}")
                if self._ready(node):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node.name} not ready in {timeout:g}s:\n{node.tail()}")
                time.sleep(0.2)

    @staticmethod
    def _ready(node: Node) -> bool:
        if node.kind == "worker":
            return "worker ready" in node.tail(100_000)
        try:
            return httpx.get(f"{node.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, node: Node) -> None:
        """SIGKILL: no shutdown code runs, its leases stay in the database until they expire."""
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=10)


def cluster_env(*, database_url: str, redis_url: str, model_dir: Path, twilio_url: str, public_url: str,
                account_sid: str, auth_token: str, whatsapp_from: str, lease_s: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCIERGE_")}
    env.update({
        "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "CONCIERGE_DATABASE_URL": database_url, "CONCIERGE_REDIS_URL": redis_url,
        "CONCIERGE_MODEL_DIR": str(model_dir), "CONCIERGE_WHATSAPP_WORKER": "process",
        "CONCIERGE_PUBLIC_URL": public_url, "CONCIERGE_TWILIO_ACCOUNT_SID": account_sid,
        "CONCIERGE_TWILIO_AUTH_TOKEN": auth_token, "CONCIERGE_TWILIO_API_URL": twilio_url,
        "CONCIERGE_TWILIO_WHATSAPP_FROM": whatsapp_from,
        "CONCIERGE_CONVERSATION_LEASE_S": str(lease_s), "CONCIERGE_INBOX_SWEEP_INTERVAL_S": "1",
        "CONCIERGE_REPLY_POLL_S": "0.5", "CONCIERGE_RASA_TIMEOUT": "8",
        "CONCIERGE_RATE_LIMITS": "false", "CONCIERGE_SLA_SWEEP_INTERVAL_S": "0",
        "CONCIERGE_CX_ROLLUP_INTERVAL_S": "0", "CONCIERGE_AUDIT_CHECKPOINT_INTERVAL_S": "0",
        "CONCIERGE_ASSIGN_SWEEP_INTERVAL_S": "0", "CONCIERGE_AUDIT_KEY": "multi-process-test-audit-key",
    })
    return env
