"""``concierge run --api-processes N --rasa-replicas M``: the scaled-out product on one machine.

- N api processes (``concierge serve``) on consecutive loopback ports from ``--api-port-base``, behind
  the round-robin front (``api.front``) on the public port (CONCIERGE_HOST:CONCIERGE_PORT).
- M Rasa replicas on consecutive ports from CONCIERGE_RASA_URL's, the same model, their trackers in
  PostgreSQL (Rasa's SQL tracker store) and their locks in Redis (its Redis lock store); their action
  endpoint is the front. The api processes spread turns over them (CONCIERGE_RASA_URLS).
- K WhatsApp workers (``concierge worker``; ``--workers``, default 1): on PostgreSQL they share the
  WhatsApp conversations out by lease, as the api processes share web chat.

Every child runs in its own process group, dies with this process, and is restarted when it exits or
stops answering (``api.rasa.supervisor.ProcessSupervisor``). SIGINT/SIGTERM stop them all.

More than one api process, Rasa replica or worker needs PostgreSQL and Redis: checked, with the
reason, before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.rasa.supervisor import PortTaken, ProcessSupervisor, RasaSupervisor, die_with_parent, listener_of, port_in_use
from api.settings import REPO_ROOT, Settings

EXIT_USAGE = 2


class LaunchError(Exception):
    """The command cannot run as asked (the message says why); nothing was started."""


@dataclass(frozen=True)
class Plan:
    api_processes: int
    rasa_replicas: int
    host: str
    public_port: int
    api_ports: tuple[int, ...]
    rasa_ports: tuple[int, ...]
    sandbox_port: int | None
    workers: int = 1

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.api_ports]

    @property
    def rasa_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.rasa_ports]


def is_scaled(api_processes: int, rasa_replicas: int, workers: int = 1) -> bool:
    return api_processes > 1 or rasa_replicas > 1 or workers > 1


def plan(settings: Settings, *, api_processes: int, rasa_replicas: int, api_port_base: int | None = None,
         sandbox: bool = False, workers: int = 1) -> Plan:
    """Check what was asked for against the settings; ``LaunchError`` says what is wrong."""
    if api_processes < 1:
        raise LaunchError(f"--api-processes must be at least 1, not {api_processes}")
    if rasa_replicas < 0:
        raise LaunchError(f"--rasa-replicas must be 0 (Rasa runs elsewhere) or more, not {rasa_replicas}")
    if workers < 1:
        raise LaunchError(f"--workers must be at least 1, not {workers}")
    if is_scaled(api_processes, rasa_replicas, workers):
        wanted = (f"--api-processes {api_processes} --rasa-replicas {rasa_replicas} --workers {workers}: "
                  "the processes")
        if not settings.database_url.startswith("postgresql"):
            raise LaunchError(f"{wanted} share one database: set CONCIERGE_DATABASE_URL to PostgreSQL "
                              "(postgresql+psycopg://user:password@host:5432/database); SQLite serves one process")
        if not settings.redis_url:
            raise LaunchError(f"{wanted} share live updates and Rasa's conversation locks through Redis: set "
                              "CONCIERGE_REDIS_URL (redis://host:6379/0)")
        if rasa_replicas:
            from api.rasa.process import shared_store_env

            try:
                shared_store_env(settings)
            except ValueError as exc:
                raise LaunchError(str(exc)) from None
    base = api_port_base if api_port_base is not None else settings.port + 10
    api_ports = tuple(range(base, base + api_processes))
    rasa_first = int(settings.rasa_url.rsplit(":", 1)[-1].split("/")[0]) if rasa_replicas else 0
    rasa_ports = tuple(range(rasa_first, rasa_first + rasa_replicas))
    sandbox_port = settings.whatsapp_sandbox_port if sandbox and settings.whatsapp_sandbox_port else None
    named: list[tuple[str, int]] = [("the public port (CONCIERGE_PORT)", settings.port)]
    named += [(f"api process {i + 1} (--api-port-base)", p) for i, p in enumerate(api_ports)]
    named += [(f"Rasa replica {i + 1} (CONCIERGE_RASA_URL's port + {i})", p) for i, p in enumerate(rasa_ports)]
    if sandbox_port is not None:
        named.append(("the WhatsApp sandbox (CONCIERGE_WHATSAPP_SANDBOX_PORT)", sandbox_port))
    seen: dict[int, str] = {}
    for what, port in named:
        if not 0 < port < 65536:
            raise LaunchError(f"{what} would be port {port}, outside 1-65535")
        if port in seen:
            raise LaunchError(f"{what} and {seen[port]} would both use port {port}: choose other ports")
        seen[port] = what
    return Plan(api_processes, rasa_replicas, settings.host, settings.port, api_ports, rasa_ports, sandbox_port,
                workers)


def child_env(settings: Settings, plan_: Plan, **overrides: str) -> dict[str, str]:
    """The environment of an api or worker process: the settings this run resolved, as CONCIERGE_* names."""
    env = dict(os.environ)
    env.update({
        "CONCIERGE_DATABASE_URL": settings.database_url,
        "CONCIERGE_REDIS_URL": settings.redis_url,
        "CONCIERGE_VAR_DIR": str(settings.var_dir),
        "CONCIERGE_HOST": "127.0.0.1",
        "CONCIERGE_PUBLIC_URL": settings.public_url,
        "CONCIERGE_WHATSAPP_WORKER": "process",
        "CONCIERGE_TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "CONCIERGE_TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
        "CONCIERGE_TWILIO_API_URL": settings.twilio_api_url,
        "CONCIERGE_TWILIO_WHATSAPP_FROM": settings.twilio_whatsapp_from,
    })
    if plan_.rasa_replicas:
        env["CONCIERGE_RASA_URLS"] = ",".join(plan_.rasa_urls)
    env.update(overrides)
    return env


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False
    return probe


def _spawner(args: list[str], env: dict[str, str], log_file: Path) -> Callable[[], subprocess.Popen[bytes]]:
    def spawn() -> subprocess.Popen[bytes]:
        log = open(log_file, "ab")  # noqa: SIM115 (the child holds it)
        try:
            return subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=die_with_parent)
        finally:
            log.close()
    return spawn


def supervisors(settings: Settings, plan_: Plan, model: Path | None) -> list[ProcessSupervisor]:
    """Rasa replicas first (they take longest), then the api processes, then the workers."""
    from api.rasa import process

    logs = settings.var_dir / "log"
    logs.mkdir(parents=True, exist_ok=True)
    front = f"http://127.0.0.1:{plan_.public_port}"
    found: list[ProcessSupervisor] = []
    for i, port in enumerate(plan_.rasa_ports, start=1):
        assert model is not None

        def spawn_rasa(port: int = port, i: int = i) -> subprocess.Popen[bytes]:
            return process.start_rasa(settings, model, port=port, action_url=f"{front}/rasa/webhook",
                                      log_file=logs / f"rasa-{i}.log", shared_stores=True)

        found.append(RasaSupervisor(spawn_rasa, url=f"http://127.0.0.1:{port}", token=settings.rasa_token,
                                    pidfile=settings.var_dir / f"rasa-{i}.pid", name=f"Rasa replica {i}",
                                    port_advice="CONCIERGE_RASA_URL (replicas use the ports after it)"))
    python = sys.executable
    for i, port in enumerate(plan_.api_ports, start=1):
        env = child_env(settings, plan_, CONCIERGE_PORT=str(port))
        found.append(ProcessSupervisor(
            _spawner([python, "-m", "api.cli", "serve"], env, logs / f"api-{i}.log"), name=f"api process {i}",
            url=f"http://127.0.0.1:{port}", probe=_http_ok(f"http://127.0.0.1:{port}/healthz"),
            pidfile=settings.var_dir / f"api-{i}.pid", mark="api.cli serve", port_advice="--api-port-base",
            ready_timeout=180.0))
    for i in range(1, plan_.workers + 1):
        # One worker keeps the names of the unscaled run (worker.log, worker.pid); several are numbered.
        tag = "worker" if plan_.workers == 1 else f"worker-{i}"
        found.append(ProcessSupervisor(
            _spawner([python, "-m", "api.cli", "worker"], child_env(settings, plan_), logs / f"{tag}.log"),
            name="WhatsApp worker" if plan_.workers == 1 else f"WhatsApp worker {i}", url=None,
            probe=lambda: True, pidfile=settings.var_dir / f"{tag}.pid", mark="api.cli worker"))
    return found


def check_ports(plan_: Plan, sups: list[ProcessSupervisor]) -> None:
    """Orphans of an earlier run are stopped; a port held by anyone else is refused (``PortTaken``)."""
    for sup in sups:
        sup.check_port()
    # (The WhatsApp sandbox is already listening by now: it refused a taken port when it started.)
    port = plan_.public_port
    if port_in_use(plan_.host if plan_.host != "0.0.0.0" else "127.0.0.1", port):
        who = listener_of(port)
        raise PortTaken(f"port {port} (the front, CONCIERGE_PORT) is already in use" + (f" by {who}" if who else "")
                        + "; stop that program or choose another port")


def _announce_ready(sups: list[ProcessSupervisor], stop: threading.Event) -> None:
    def wait(sup: ProcessSupervisor) -> None:
        while not stop.is_set():
            if sup.wait_ready(1.0):
                print(f"{sup.name} ready ({sup.url}).", flush=True)
                return

    for sup in sups:
        if sup.url is not None:
            threading.Thread(target=wait, args=(sup,), daemon=True).start()


def run_scaled(settings: Settings, plan_: Plan, *, model: Path | None, demo_logins: object,
               sandbox: object | None) -> int:
    """Start everything, serve the front until SIGINT/SIGTERM, stop everything. Returns the exit code."""
    from api.front import serve

    sups = supervisors(settings, plan_, model)
    try:
        check_ports(plan_, sups)
    except PortTaken as exc:
        print(f"Cannot start: {exc}", file=sys.stderr)
        if sandbox is not None:
            sandbox.stop()  # type: ignore[attr-defined]
        return EXIT_USAGE
    started: list[ProcessSupervisor] = []
    stopping = threading.Event()
    try:
        for sup in sups:
            sup.start()
            started.append(sup)
            if sup is sups[0] and plan_.rasa_replicas > 1:
                # The first replica creates the tracker store's tables; the others start after it.
                from api.rasa.process import wait_for_tracker_tables

                wait_for_tracker_tables(settings, proc=sup.proc)
        base = f"http://{settings.host}:{settings.port}"
        print(f"\n  HCP Concierge: {plan_.api_processes} api process(es) behind a round-robin front, "
              f"{plan_.rasa_replicas} Rasa replica(s), {plan_.workers} WhatsApp worker(s)")
        print(f"  web chat      {base}/")
        print(f"  consoles      {base}/console" + (f"   (demo logins: {demo_logins})" if demo_logins else ""))
        print(f"  health        {base}/healthz   readiness {base}/readyz")
        print(f"  api docs      {base}/docs")
        print(f"  api processes {', '.join(plan_.api_urls)}   (logs {settings.var_dir / 'log'}/api-N.log)")
        if plan_.rasa_replicas:
            stores = process_stores(settings)
            print(f"  rasa replicas {', '.join(plan_.rasa_urls)}   ({stores})")
        else:
            print(f"  rasa          {', '.join(settings.rasa_replica_urls)}   (not started here)")
        sandbox_url = getattr(sandbox, "url", None)
        if sandbox_url:
            print(f"  whatsapp      {sandbox_url}/   (sandbox: a simulated phone over a fake Twilio, no account)")
        print("  Ctrl-C stops everything.\n", flush=True)
        _announce_ready(sups, stopping)

        async def front_until_signal() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            backends = [("127.0.0.1", p) for p in plan_.api_ports]
            await serve(settings.host, settings.port, backends, stop)

        asyncio.run(front_until_signal())
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        # Stopped together: each waits up to 15 s for its process group.
        threads = [threading.Thread(target=sup.stop) for sup in reversed(started)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"Stopped {len(started)} process(es).", flush=True)
        if sandbox is not None:
            with contextlib.suppress(Exception):
                sandbox.stop()  # type: ignore[attr-defined]
    return 0


def process_stores(settings: Settings) -> str:
    from api.rasa.process import shared_store_env

    env = shared_store_env(settings)
    return (f"trackers: PostgreSQL {env['RASA_TRACKER_DB_HOST']}:{env['RASA_TRACKER_DB_PORT']}/"
            f"{env['RASA_TRACKER_DB_NAME']}, locks: Redis {env['RASA_LOCK_REDIS_HOST']}:"
            f"{env['RASA_LOCK_REDIS_PORT']}/{env['RASA_LOCK_REDIS_DB']}")
