"""Faults and abuse, injected for real during steady traffic: nothing accepted may be lost, doubled,
left without its safety case, or left hanging.

    .venv/bin/python benchmarks/faults.py [--database sqlite|postgres] [--phase-seconds 20]
        [--webchat 6] [--whatsapp 4] [--skip abuse,memory] [--out FILE]

Real processes: the api (``concierge serve``, WhatsApp handled inline), a real Rasa 3.6 server kept
up by the same supervisor ``concierge run`` uses, Redis (its own ``redis-server`` on a free port, for
the live relay and the rate limits), the database (SQLite file, or a PostgreSQL cluster the benchmark
initialises, stops and starts itself) and a fake Twilio on loopback. Simulated HCPs talk on web chat
(each from its own address, through a trusted proxy header) and WhatsApp (signed webhooks); one
message in five reports an adverse event. Clients behave like the page and like Twilio: a failed or
refused request is sent again with the same id (client_message_id / MessageSid).

Phases, each ``--phase-seconds`` long with traffic throughout: baseline; Rasa killed (SIGKILL);
Rasa frozen (SIGSTOP, SIGCONT 15 s later); the api killed (SIGKILL, restarted 3 s later); the
database away (PostgreSQL stopped 30 s; on SQLite another connection holds the write lock 20 s);
Redis stopped 15 s; recovery. Then: the abuse phase (one client flooding as fast as it can while
five HCPs go on: their p95 against their own p95 without the flood, and /healthz), and the memory
phase (400 MB bodies, chunked and declared, at the anonymous endpoints: the api's peak RSS).

Reported per phase: client-visible status codes, requests that took longer than the Rasa deadline
+ 2 s, time to recover (first turn answered by Rasa again after the fault ends); and overall, after
the queues drain: accepted messages lost, stored twice, left unprocessed, AE messages without a case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.channels.whatsapp.fake_twilio import TwilioSigner  # noqa: E402
from api.conversations.copy import RASA_FALLBACK  # noqa: E402
from api.rasa import process  # noqa: E402
from api.rasa.supervisor import RasaSupervisor  # noqa: E402
from api.settings import Settings  # noqa: E402
from benchmarks._stack import free_port, pct, rss_mb  # noqa: E402
from tests.fakes.pg_cluster import PgCluster  # noqa: E402

PUBLIC_URL = "https://concierge.example.com"
RASA_DEADLINE = 8.0
HANG = RASA_DEADLINE + 2.0
AE_TEXTS = ["my patient got a widespread rash two days into cardiovex", "a patient of mine was admitted with "
            "pancreatitis after starting glucorel", "patient fainted right after her respizan injection"]
PLAIN_TEXTS = ["what is the usual dose of cardiovex", "how should respizan be stored", "can I get samples",
               "hello", "is glucorel taken weekly", "thanks"]


@dataclass
class Sent:
    marker: str
    channel: str
    ae: bool
    accepted: bool = False
    attempts: list[tuple[float, int, float]] = field(default_factory=list)  # (at, status, seconds)


@dataclass
class Run:
    phase: str = "baseline"
    sent: list[Sent] = field(default_factory=list)
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    slow: Counter[str] = field(default_factory=Counter)
    rasa_ok: list[tuple[float, float]] = field(default_factory=list)
    stop: bool = False

    def code(self, status: int | str) -> None:
        self.codes.setdefault(self.phase, Counter())[str(status)] += 1


# -- processes ------------------------------------------------------------------------------------

def serve_fake_twilio(port: int) -> None:
    import uvicorn

    from api.channels.whatsapp.fake_twilio import FakeTwilio

    uvicorn.run(FakeTwilio().app(), host="127.0.0.1", port=port, log_level="warning")


class Product:
    def __init__(self, var: Path, database: str) -> None:
        self.var = var
        self.database = database
        self.api_port, self.rasa_port, self.redis_port, self.twilio_port = (free_port() for _ in range(4))
        self.pg: PgCluster | None = None
        self.db_url = f"sqlite:///{var / 'faults.db'}"
        self.api: subprocess.Popen[bytes] | None = None
        self.redis: subprocess.Popen[bytes] | None = None
        self.twilio: subprocess.Popen[bytes] | None = None
        self.rasa: RasaSupervisor | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "CONCIERGE_DATABASE_URL": self.db_url, "CONCIERGE_VAR_DIR": str(self.var),
            "CONCIERGE_PORT": str(self.api_port), "CONCIERGE_RASA_URL": f"http://127.0.0.1:{self.rasa_port}",
            "CONCIERGE_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "CONCIERGE_PUBLIC_URL": PUBLIC_URL,
            "CONCIERGE_TWILIO_API_URL": f"http://127.0.0.1:{self.twilio_port}",
            "CONCIERGE_TWILIO_ACCOUNT_SID": "ACtest", "CONCIERGE_TWILIO_AUTH_TOKEN": "test-auth-token",
            "CONCIERGE_TWILIO_WHATSAPP_FROM": "whatsapp:+15550001111", "CONCIERGE_WHATSAPP_WORKER": "inline",
            "CONCIERGE_TRUSTED_PROXIES": '["127.0.0.1"]', "CONCIERGE_RASA_TIMEOUT": str(RASA_DEADLINE),
            "CONCIERGE_INBOX_SWEEP_INTERVAL_S": "2", "CONCIERGE_AUDIT_KEY": "faults-benchmark",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CONCIERGE_SLA_SWEEP_INTERVAL_S": "0",
        })
        return env

    def start(self) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        if self.database == "postgres":
            self.pg = PgCluster(free_port()).init().start()
            self.db_url = self.pg.url
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        self.twilio = subprocess.Popen([sys.executable, __file__, "--serve-twilio", str(self.twilio_port)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        concierge = str(REPO / ".venv" / "bin" / "concierge")
        subprocess.run([concierge, "db", "upgrade"], check=True, env=self.env(), stdout=subprocess.DEVNULL)
        subprocess.run([concierge, "knowledge", "load", "--library", str(REPO / "knowledge" / "content")],
                       env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        settings = Settings(database_url=self.db_url, var_dir=self.var, rasa_url=f"http://127.0.0.1:{self.rasa_port}")
        model = process.ensure_model(settings)
        self.rasa = RasaSupervisor(
            lambda: process.start_rasa(settings, model, port=self.rasa_port, action_url=f"{self.api_url}/rasa/webhook",
                                       log_file=self.var / "rasa.log"),
            url=settings.rasa_url, token=settings.rasa_token, pidfile=self.var / "rasa.pid")
        self.rasa.start()
        self.start_api()
        if not self.rasa.wait_ready(420):
            raise RuntimeError("Rasa did not start; see " + str(self.var / "rasa.log"))

    def start_api(self) -> None:
        log = open(self.var / "api.log", "ab")  # noqa: SIM115
        self.api = subprocess.Popen([str(REPO / ".venv" / "bin" / "concierge"), "serve"], env=self.env(),
                                    stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("api did not start; see " + str(self.var / "api.log"))

    def kill_api(self) -> None:
        assert self.api is not None
        os.killpg(self.api.pid, signal.SIGKILL)
        self.api.wait()

    def stop(self) -> None:
        if self.api is not None and self.api.poll() is None:
            os.killpg(self.api.pid, signal.SIGTERM)
            with _suppress():
                self.api.wait(30)
        if self.rasa is not None:
            self.rasa.stop()
        for proc in (self.redis, self.twilio):
            if proc is not None:
                proc.terminate()
                with _suppress():
                    proc.wait(10)
        if self.pg is not None:
            self.pg.destroy()


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


# -- traffic --------------------------------------------------------------------------------------

async def webchat_hcp(run: Run, api: str, address: str, think: float) -> None:
    headers = {"x-forwarded-for": address}
    async with httpx.AsyncClient(base_url=api, timeout=HANG + 20) as client:
        secret = None
        while not run.stop:
            if secret is None:
                try:
                    r = await client.post("/api/webchat/sessions", headers=headers)
                    run.code(r.status_code)
                    if r.status_code == 201:
                        secret = r.json()["session_id"]
                except httpx.HTTPError as exc:
                    run.code(type(exc).__name__)
                if secret is None:
                    await asyncio.sleep(1.0)
                continue
            ae = random.random() < 0.2
            item = Sent(marker=uuid.uuid4().hex[:10], channel="webchat", ae=ae)
            run.sent.append(item)
            body = {"text": f"{random.choice(AE_TEXTS if ae else PLAIN_TEXTS)} [{item.marker}]",
                    "client_message_id": item.marker}
            while not run.stop and not item.accepted:
                started = time.monotonic()
                try:
                    r = await client.post("/api/webchat/messages", json=body,
                                          headers={**headers, "X-Chat-Session": secret})
                    status: int | str = r.status_code
                except httpx.HTTPError as exc:
                    r, status = None, type(exc).__name__
                took = time.monotonic() - started
                item.attempts.append((time.time(), status if isinstance(status, int) else 0, took))
                run.code(status)
                if took > HANG:
                    run.slow[run.phase] += 1
                if r is not None and r.status_code == 200:
                    item.accepted = True
                    texts = [m["text"] for m in r.json()["messages"]]
                    if texts and RASA_FALLBACK not in texts:  # answered through Rasa: (started, ended)
                        run.rasa_ok.append((time.time() - took, time.time()))
                elif r is not None and r.status_code == 404:
                    secret = None  # the session is gone (never expected): start a new one
                    break
                else:
                    await asyncio.sleep(1.0)
            await asyncio.sleep(think * random.uniform(0.5, 1.5))


async def whatsapp_hcp(run: Run, api: str, number: str, think: float) -> None:
    signer = TwilioSigner(PUBLIC_URL, auth_token="test-auth-token", account_sid="ACtest")
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        while not run.stop:
            ae = random.random() < 0.2
            item = Sent(marker=uuid.uuid4().hex[:10], channel="whatsapp", ae=ae)
            run.sent.append(item)
            params = signer.inbound(f"whatsapp:{number}",
                                    f"{random.choice(AE_TEXTS if ae else PLAIN_TEXTS)} [{item.marker}]")
            req = signer.request("/webhooks/twilio/whatsapp", params)
            while not run.stop and not item.accepted:
                started = time.monotonic()
                try:
                    r = await client.post(req.path_and_query, content=req.body, headers=req.headers)
                    status: int | str = r.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                item.attempts.append((time.time(), status if isinstance(status, int) else 0,
                                      time.monotonic() - started))
                run.code(status)
                if status == 200:
                    item.accepted = True
                else:
                    await asyncio.sleep(1.0)  # Twilio would retry later with the same MessageSid
            await asyncio.sleep(think * random.uniform(0.5, 1.5))


# -- faults ---------------------------------------------------------------------------------------

async def run_faults(product: Product, run: Run, phase_s: float, webchat: int, whatsapp: int) -> dict[str, Any]:
    api = product.api_url
    tasks = [asyncio.create_task(webchat_hcp(run, api, f"203.0.113.{i + 1}", 2.0)) for i in range(webchat)]
    tasks += [asyncio.create_task(whatsapp_hcp(run, api, f"+4477009{i:05d}", 3.0)) for i in range(whatsapp)]
    fault_end: dict[str, float] = {}

    async def phase(name: str) -> None:
        run.phase = name
        print(f"[{time.strftime('%H:%M:%S')}] phase {name}", flush=True)

    await phase("baseline")
    await asyncio.sleep(phase_s)

    await phase("rasa_killed")
    assert product.rasa is not None and product.rasa.proc is not None
    os.killpg(product.rasa.proc.pid, signal.SIGKILL)
    fault_end["rasa_killed"] = time.time()
    await asyncio.sleep(phase_s)

    await phase("rasa_frozen")
    frozen = product.rasa.proc
    assert frozen is not None
    os.killpg(frozen.pid, signal.SIGSTOP)
    await asyncio.sleep(15)
    with _suppress():
        os.killpg(frozen.pid, signal.SIGCONT)
    fault_end["rasa_frozen"] = time.time()
    await asyncio.sleep(max(0.0, phase_s - 15))

    await phase("api_killed")
    product.kill_api()
    await asyncio.sleep(3)
    await asyncio.to_thread(product.start_api)
    fault_end["api_killed"] = time.time()
    await asyncio.sleep(phase_s)

    await phase("database_away")
    if product.pg is not None:
        product.pg.stop("fast")
        await asyncio.sleep(30)
        product.pg.start()
    else:  # SQLite: a backup tool or an admin shell holding the write lock
        holder = sqlite3.connect(product.db_url.removeprefix("sqlite:///"), timeout=60)
        holder.execute("BEGIN EXCLUSIVE")
        await asyncio.sleep(20)
        holder.rollback()
        holder.close()
    fault_end["database_away"] = time.time()
    await asyncio.sleep(phase_s)

    await phase("redis_stopped")
    assert product.redis is not None
    product.redis.terminate()
    product.redis.wait()
    await asyncio.sleep(15)
    product.redis = subprocess.Popen(["redis-server", "--port", str(product.redis_port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    fault_end["redis_stopped"] = time.time()
    await asyncio.sleep(phase_s)

    await phase("recovery")
    await asyncio.sleep(phase_s)
    run.stop = True
    await asyncio.gather(*tasks, return_exceptions=True)

    # Time to recover: from the end of the fault (the kill, for a process the supervisor restarts;
    # the restart or resume otherwise) to the first turn started after it that Rasa answered.
    recovered: dict[str, float | None] = {}
    for name, ended in fault_end.items():
        later = [done for started, done in run.rasa_ok if started >= ended]
        recovered[name] = round(min(later) - ended, 1) if later else None
    return {"recovery_s": recovered, "restarts_of_rasa": product.rasa.restarts}


def drain_and_check(product: Product, run: Run, timeout: float = 240) -> dict[str, Any]:
    engine = create_engine(product.db_url)
    deadline = time.monotonic() + timeout
    pending = -1
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            pending = int(conn.execute(text("SELECT count(*) FROM inbox WHERE status = 'pending'")).scalar_one())
            raw = 0
            if product.database == "postgres":  # on SQLite the raw webhooks live in a file of their own
                raw = int(conn.execute(text("SELECT count(*) FROM whatsapp_inbound WHERE status = 'pending'"))
                          .scalar_one())
        if pending == 0 and raw == 0:
            break
        time.sleep(2)
    accepted = [s for s in run.sent if s.accepted]
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT m.id, m.body, i.status, "
            "(SELECT count(*) FROM adverse_event_message a WHERE a.message_id = m.id) AS cases, "
            "(SELECT count(*) FROM message r WHERE r.in_reply_to = m.id) AS replies "
            "FROM message m JOIN inbox i ON i.message_id = m.id WHERE m.direction = 'in'")).all()
    engine.dispose()
    by_marker: dict[str, list[Any]] = {}
    for row in rows:
        body = str(row[1])
        if body.endswith("]") and "[" in body:
            by_marker.setdefault(body.rsplit("[", 1)[1].rstrip("]"), []).append(row)
    lost = [s.marker for s in accepted if s.marker not in by_marker]
    doubled = [m for m, rs in by_marker.items() if len(rs) > 1]
    unprocessed = [m for m, rs in by_marker.items() if any(r[2] == "pending" for r in rs)]
    unanswered = [m for m, rs in by_marker.items() if all(r[4] == 0 for r in rs)]
    ae_without_case = [s.marker for s in accepted if s.ae and s.marker in by_marker
                       and all(r[3] == 0 for r in by_marker[s.marker])]
    return {
        "sent": len(run.sent), "accepted": len(accepted), "stored": len(by_marker),
        "accepted_lost": len(lost), "stored_twice": len(doubled), "left_pending": len(unprocessed),
        "without_reply": len(unanswered), "ae_accepted": sum(1 for s in accepted if s.ae),
        "ae_without_case": len(ae_without_case), "pending_after_drain": pending,
        "examples": {"lost": lost[:5], "doubled": doubled[:5], "ae_without_case": ae_without_case[:5]},
    }


# -- abuse and memory -----------------------------------------------------------------------------

async def abuse(product: Product, seconds: float) -> dict[str, Any]:
    api = product.api_url

    async def normal(address: str, latencies: list[float], stop: list[bool]) -> None:
        headers = {"x-forwarded-for": address}
        async with httpx.AsyncClient(base_url=api, timeout=30) as client:
            secret = (await client.post("/api/webchat/sessions", headers=headers)).json()["session_id"]
            while not stop[0]:
                started = time.monotonic()
                r = await client.post("/api/webchat/messages", json={"text": random.choice(PLAIN_TEXTS)},
                                      headers={**headers, "X-Chat-Session": secret})
                if r.status_code == 200:
                    latencies.append(time.monotonic() - started)
                await asyncio.sleep(random.uniform(1.5, 2.5))

    async def health(latencies: list[float], stop: list[bool]) -> None:
        async with httpx.AsyncClient(base_url=api, timeout=30) as client:
            while not stop[0]:
                started = time.monotonic()
                await client.get("/healthz")
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.5)

    async def flood(codes: Counter[str], stop: list[bool]) -> None:
        headers = {"x-forwarded-for": "198.51.100.66"}
        async with httpx.AsyncClient(base_url=api, timeout=30, limits=httpx.Limits(max_connections=16)) as client:
            secret = None
            while secret is None and not stop[0]:
                r = await client.post("/api/webchat/sessions", headers=headers)
                secret = r.json().get("session_id") if r.status_code == 201 else None

            async def one() -> None:
                while not stop[0]:
                    try:
                        r = await client.post("/api/webchat/messages", json={"text": "spam " + uuid.uuid4().hex},
                                              headers={**headers, "X-Chat-Session": secret or ""})
                        codes[str(r.status_code)] += 1
                    except httpx.HTTPError as exc:
                        codes[type(exc).__name__] += 1

            await asyncio.gather(*[one() for _ in range(8)])

    async def measure(with_flood: bool) -> tuple[list[float], list[float], Counter[str]]:
        stop = [False]
        lat: list[float] = []
        hz: list[float] = []
        codes: Counter[str] = Counter()
        tasks = [asyncio.create_task(normal(f"192.0.2.{i + 10 + (50 if with_flood else 0)}", lat, stop))
                 for i in range(5)]
        tasks.append(asyncio.create_task(health(hz, stop)))
        if with_flood:
            tasks.append(asyncio.create_task(flood(codes, stop)))
        await asyncio.sleep(seconds)
        stop[0] = True
        await asyncio.gather(*tasks, return_exceptions=True)
        return lat, hz, codes

    quiet, quiet_hz, _ = await measure(False)
    flooded, flooded_hz, codes = await measure(True)
    return {
        "normal_p50_p95_s": [round(pct(quiet, 50), 3), round(pct(quiet, 95), 3)],
        "flooded_p50_p95_s": [round(pct(flooded, 50), 3), round(pct(flooded, 95), 3)],
        "p95_ratio": round(pct(flooded, 95) / pct(quiet, 95), 2) if quiet else None,
        "healthz_p95_s": [round(pct(quiet_hz, 95), 3), round(pct(flooded_hz, 95), 3)],
        "flood_requests": sum(codes.values()), "flood_codes": dict(codes),
        "turns_measured": [len(quiet), len(flooded)],
    }


def memory(product: Product) -> dict[str, Any]:
    assert product.api is not None
    pid = product.api.pid
    out: dict[str, Any] = {"api_rss_idle_mb": round(rss_mb(pid), 1)}
    size = 400 * 1024 * 1024

    def body() -> Any:
        sent = 0
        chunk = b"a" * (1024 * 1024)
        while sent < size:
            sent += len(chunk)
            yield chunk

    def peak_during(send: Any) -> tuple[float, str]:
        peak = [0.0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            status = str(send())
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        finally:
            done.set()
            sampler.join()
        return peak[0], status

    with httpx.Client(base_url=product.api_url, timeout=120) as client:
        secret = client.post("/api/webchat/sessions", headers={"x-forwarded-for": "192.0.2.250"}).json()["session_id"]
        cases = {
            "webchat_chunked_400MB": lambda: client.post("/api/webchat/messages", content=body(),
                                                         headers={"X-Chat-Session": secret}).status_code,
            "twilio_chunked_400MB": lambda: client.post("/webhooks/twilio/whatsapp", content=body(), headers={
                "content-type": "application/x-www-form-urlencoded"}).status_code,
            "upload_declared_400MB": lambda: _declared(product.api_port, "/console/content/library", size),
        }
        for name, send in cases.items():
            peak, status = peak_during(send)
            out[name] = {"status": status, "api_rss_peak_mb": round(peak, 1)}
    return out


def _declared(port: int, path: str, size: int) -> int:
    """A request that declares ``size`` bytes, sends 1 KB and waits for the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode() + b"x" * 1024)
        head = sock.recv(4096)
    return int(head.split()[1]) if head else 0


# -- main -----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--phase-seconds", type=float, default=20.0)
    parser.add_argument("--webchat", type=int, default=6)
    parser.add_argument("--whatsapp", type=int, default=4)
    parser.add_argument("--skip", default="", help="comma list of: faults, abuse, memory")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (api.log, rasa.log)")
    parser.add_argument("--serve-twilio", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_twilio:
        serve_fake_twilio(args.serve_twilio)
        return 0
    if shutil.which("redis-server") is None:
        print("redis-server is needed", file=sys.stderr)
        return 2
    skip = set(filter(None, args.skip.split(",")))
    var = Path(tempfile.mkdtemp(prefix="concierge-faults-"))
    product = Product(var, args.database)
    report: dict[str, Any] = {"database": args.database, "phase_seconds": args.phase_seconds,
                              "load_average_at_start": os.getloadavg()}
    try:
        product.start()
        if "faults" not in skip:
            run = Run()
            report["faults"] = asyncio.run(run_faults(product, run, args.phase_seconds, args.webchat, args.whatsapp))
            report["faults"]["status_codes"] = {k: dict(v) for k, v in run.codes.items()}
            report["faults"]["requests_past_deadline_plus_2s"] = dict(run.slow)
            report["faults"]["integrity"] = drain_and_check(product, run)
            print(json.dumps(report["faults"], indent=2, default=str), flush=True)
        if "abuse" not in skip:
            report["abuse"] = asyncio.run(abuse(product, args.phase_seconds))
            print(json.dumps(report["abuse"], indent=2, default=str), flush=True)
        if "memory" not in skip:
            report["memory"] = memory(product)
    finally:
        product.stop()
        report["load_average_at_end"] = os.getloadavg()
    text_out = json.dumps(report, indent=2, default=str)
    print(text_out)
    if args.out:
        args.out.write_text(text_out + "\n")
    if args.keep:
        print(f"logs kept in {var}", file=sys.stderr)
    else:
        shutil.rmtree(var, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
