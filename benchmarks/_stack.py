"""Start the product as real processes for benchmarks: Rasa + ``concierge serve``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.rasa import process  # noqa: E402
from api.settings import Settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank); NaN when there are no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    total = 0
    pids = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


# Rate limits stay on in the benchmarks (their cost is part of a turn), high enough for a benchmark client.
HIGH_RATE_LIMITS = {f"CONCIERGE_RATE_{name}_PER_MIN": "100000"
                    for name in ("MESSAGES", "CLIENT_MESSAGES", "READS", "SESSIONS")}


class Stack:
    def __init__(self, var_dir: Path, database_url: str | None = None, with_rasa: bool = True,
                 extra_env: dict[str, str] | None = None, api_argv: list[str] | None = None) -> None:
        self.var_dir = var_dir
        self.api_port = free_port()
        self.rasa_port = free_port()
        self.database_url = database_url or f"sqlite:///{var_dir / 'bench.db'}"
        self.settings = Settings(database_url=self.database_url, var_dir=var_dir, port=self.api_port,
                                 rasa_url=f"http://127.0.0.1:{self.rasa_port}")
        self.with_rasa = with_rasa
        self.extra_env = extra_env or {}
        # The api process's command (default ``concierge serve``; benchmarks/turn_profile.py runs it profiled).
        self.api_argv = api_argv
        self.api_proc: subprocess.Popen[bytes] | None = None
        self.rasa_proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "CONCIERGE_DATABASE_URL": self.database_url, "CONCIERGE_VAR_DIR": str(self.var_dir),
            "CONCIERGE_PORT": str(self.api_port), "CONCIERGE_RASA_URL": self.rasa_url,
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        })
        env.update(self.extra_env)
        return env

    def start(self) -> Stack:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        concierge = str(REPO / ".venv" / "bin" / "concierge")
        subprocess.run([concierge, "db", "upgrade"], check=True, env=self.env(), stdout=subprocess.DEVNULL)
        log = open(self.var_dir / "api.log", "ab")  # noqa: SIM115
        self.api_proc = subprocess.Popen(self.api_argv or [concierge, "serve"], env=self.env(), stdout=log,
                                         stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        if self.with_rasa:
            model = process.ensure_model(self.settings)
            self.rasa_proc = process.start_rasa(self.settings, model, port=self.rasa_port,
                                                action_url=f"{self.api_url}/rasa/webhook",
                                                log_file=self.var_dir / "rasa.log")
            process.wait_until_ready(self.rasa_url, self.settings.rasa_token, proc=self.rasa_proc)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("api did not start; see " + str(self.var_dir / "api.log"))

    def stop(self) -> None:
        for proc in (self.api_proc, self.rasa_proc):
            if proc is not None:
                process.stop(proc)
