"""Scale-out on PostgreSQL + Redis: (api processes, Rasa replicas) = (1,1), (2,1), (2,2), (3,2).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale_out.py [--configs 1x1 2x1 2x2 3x2]
        [--conversations 40] [--messages 10] [--concurrency 10] [--kill 3x2]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/9]

Each configuration starts the product as ``concierge run --api-processes N --rasa-replicas M
--no-demo-data`` on a fresh PostgreSQL database (and a fresh Rasa tracker database), waits for
``/readyz``, then ``--concurrency`` HCPs at a time each send ``--messages`` web-chat messages in
sequence, **every message to a randomly chosen api process** (straight to its port, not through the
front, so consecutive messages of one conversation land on different processes). A message whose
process does not answer (killed) is sent again with the same ``client_message_id`` to another one,
as the web chat page does: the server stores it once.

Checked from the database afterwards, per conversation:

- lost: a message the client sent that is not stored, or stored but never processed;
- duplicated: a message stored twice;
- reordered: stored, processed (``processed_at``) or answered (replies' ``in_reply_to``) out of
  the order it was sent;
- turns twice: Rasa saw a message more than once (user events in Rasa's SQL tracker store for the
  conversation ≠ messages sent; only where the tracker store is SQL, i.e. M ≥ 1 in scaled mode).

``--kill NxM`` adds a run of that configuration in which, a third of the way through, one api
process and (when M > 1) one Rasa replica are SIGKILLed; the supervisor restarts them and every
conversation must still finish (the leases of the killed process lapse and another takes over).

Reported: turns/s, p50/p95 per message, fallbacks (Rasa missed the deadline: the HCP got the safe
fallback), the checks above, and CPU seconds per process kind (api, Rasa, worker, front) per turn.
This host has 2 cores: the point is correctness and the overhead of the extra processes, not
speed-up.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.conversations.copy import RASA_FALLBACK  # noqa: E402
from benchmarks._stack import free_port, pct  # noqa: E402

SCRIPT = ["hello", "thanks", "are you a bot?", "good morning", "ok", "thank you very much",
          "hi there", "cheers", "tell me a joke", "what's the weather tomorrow"]


def admin_url(pg: str, database: str) -> str:
    return make_url(pg).set(database=database).render_as_string(hide_password=False)


def create_database(pg: str, name: str) -> None:
    engine = create_engine(admin_url(pg, "postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def drop_database(pg: str, name: str) -> None:
    engine = create_engine(admin_url(pg, "postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its own threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    kids = [int(p) for p in out]
    return kids + [g for k in kids for g in descendants(k)]


def kind_of(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "venv-rasa" in cmd or "/rasa " in cmd:
        return "rasa"
    if "api.cli serve" in cmd or "concierge serve" in cmd:
        return "api"
    if "api.cli worker" in cmd or "concierge worker" in cmd:
        return "worker"
    if "api.cli run" in cmd:
        return "launcher"
    return "other"


def cpu_by_kind(root: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    for pid in [root, *descendants(root)]:
        k = kind_of(pid)
        totals[k] = totals.get(k, 0.0) + cpu_seconds(pid)
    return totals


@dataclass
class Run:
    label: str
    api: int
    rasa: int
    turns: int = 0
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    fallbacks: int = 0
    retries: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    turns_twice: int = 0
    tracker_checked: bool = False
    cpu: dict[str, float] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)


class Product:
    def __init__(self, pg: str, redis: str, api: int, rasa: int, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.pg, self.db, self.tracker_db = pg, f"concierge_scale_{tag}", f"rasa_scale_{tag}"
        self.api, self.rasa = api, rasa
        self.var = tmp / tag
        self.port = free_port()
        # consecutive ports from these bases (the launcher refuses a clash before starting anything)
        self.api_base = 20000 + random.randrange(0, 2000) * 5
        self.rasa_port = 30000 + random.randrange(0, 2000) * 5
        self.redis = redis
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_urls(self) -> list[str]:
        if self.api == 1 and self.rasa <= 1:  # the plain `concierge run`: one api process on the public port
            return [self.front]
        return [f"http://127.0.0.1:{self.api_base + i}" for i in range(self.api)]

    @property
    def front(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        create_database(self.pg, self.db)
        self.var.mkdir(parents=True)
        env = dict(os.environ)
        env.update({
            "CONCIERGE_DATABASE_URL": admin_url(self.pg, self.db), "CONCIERGE_REDIS_URL": self.redis,
            "CONCIERGE_VAR_DIR": str(self.var), "CONCIERGE_PORT": str(self.port), "CONCIERGE_HOST": "127.0.0.1",
            "CONCIERGE_RASA_URL": f"http://127.0.0.1:{self.rasa_port}", "CONCIERGE_RASA_TRACKER_DB": self.tracker_db,
            "CONCIERGE_RATE_LIMITS": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
        })
        self.log = open(self.var / "run.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "run", "--api-processes", str(self.api), "--rasa-replicas",
             str(self.rasa), "--api-port-base", str(self.api_base), "--no-demo-data"],
            env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"concierge run exited {self.proc.returncode}; see {self.var / 'run.log'}")
            try:
                if all(httpx.get(f"{u}/readyz", timeout=2).status_code == 200 for u in self.api_urls):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"not ready in 15 min; see {self.var / 'run.log'}")

    def pid(self, name: str) -> int | None:
        try:
            return int((self.var / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        for db in (self.db, self.tracker_db):
            try:
                drop_database(self.pg, db)
            except Exception as exc:
                print(f"  (could not drop {db}: {exc})")


async def post_message(urls: list[str], sid: str, body: dict[str, object], run: Run) -> list[dict[str, object]]:
    """To a random api process; on a transport error or a 5xx, again (same client_message_id) elsewhere."""
    deadline = time.monotonic() + 120
    tried = 0
    while True:
        url = random.choice(urls)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                r = await client.post(f"/api/webchat/sessions/{sid}/messages", json=body)
            if r.status_code < 500:
                r.raise_for_status()
                messages: list[dict[str, object]] = r.json().get("messages") or []
                return messages
        except httpx.TransportError:
            pass
        tried += 1
        run.retries += 1
        if time.monotonic() > deadline:
            raise RuntimeError(f"message to {sid} not accepted by any api process in 120 s ({tried} tries)")
        await asyncio.sleep(0.5)


async def new_session(urls: list[str]) -> tuple[str, str]:
    for _ in range(240):
        try:
            async with httpx.AsyncClient(base_url=random.choice(urls), timeout=30) as client:
                r = await client.post("/api/webchat/sessions")
            if r.status_code == 200 or r.status_code == 201:
                data = r.json()
                return str(data["session_id"]), str(data["stream_url"]).rstrip("/").rsplit("/", 1)[-1]
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("no api process creates a session")


async def conversation(urls: list[str], messages: int, run: Run, sem: asyncio.Semaphore,
                       sent: dict[str, list[str]]) -> None:
    async with sem:
        sid, conversation_id = await new_session(urls)
        texts: list[str] = []
        sent[conversation_id] = texts
        for i in range(messages):
            t = f"{SCRIPT[i % len(SCRIPT)]} ({i + 1})"
            texts.append(t)
            started = time.perf_counter()
            replies = await post_message(urls, sid, {"text": t, "client_message_id": f"m{i}"}, run)
            run.latencies.append((time.perf_counter() - started) * 1000)
            run.turns += 1
            if any(m.get("text") == RASA_FALLBACK for m in replies):
                run.fallbacks += 1


def check(product: Product, sent: dict[str, list[str]], run: Run, settle_s: float = 120) -> None:
    """lost / duplicated / reordered / turns twice, from the database (after pending turns settle)."""
    engine = create_engine(admin_url(product.pg, product.db))
    deadline = time.monotonic() + settle_s
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            pending = conn.execute(text("SELECT count(*) FROM inbox WHERE status = 'pending'")).scalar_one()
            if not pending:
                break
            conn.rollback()
            time.sleep(1)
        for cid in sent:
            rows = conn.execute(text(
                "SELECT m.id, m.body, m.processed_at, i.status FROM message m LEFT JOIN inbox i ON i.message_id = m.id "
                "WHERE m.conversation_id = :c AND m.direction = 'in' ORDER BY m.id"), {"c": cid}).all()
            bodies = [r[1] for r in rows]
            expected = sent[cid]
            run.lost += sum(1 for t in expected if t not in bodies)
            run.lost += sum(1 for r in rows if r[3] != "done")
            run.duplicated += len(bodies) - len(set(bodies))
            done = [r for r in rows if r[2] is not None]
            order_ok = [b for b in bodies if b in expected] == [t for t in expected if t in bodies]
            processed_ok = all(a[2] <= b[2] for a, b in itertools.pairwise(done))
            replies = conn.execute(text(
                "SELECT in_reply_to FROM message WHERE conversation_id = :c AND direction = 'out' "
                "AND in_reply_to IS NOT NULL ORDER BY id"), {"c": cid}).scalars().all()
            answered_ok = all(a <= b for a, b in itertools.pairwise(replies))
            if not (order_ok and processed_ok and answered_ok):
                run.reordered += 1
    engine.dispose()
    # Rasa's own record: one user event per message it was sent.
    try:
        tracker = create_engine(admin_url(product.pg, product.tracker_db))
        with tracker.connect() as conn:
            for cid, texts in sent.items():
                n = conn.execute(text("SELECT count(*) FROM events WHERE sender_id = :c AND type_name = 'user'"),
                                 {"c": cid}).scalar_one()
                run.turns_twice += max(0, n - len(texts))
        run.tracker_checked = True
        tracker.dispose()
    except Exception:
        run.tracker_checked = False


async def drive(product: Product, run: Run, conversations: int, messages: int, concurrency: int,
                kill: bool) -> dict[str, list[str]]:
    sem = asyncio.Semaphore(concurrency)
    sent: dict[str, list[str]] = {}
    urls = product.api_urls
    started = time.perf_counter()
    tasks = [asyncio.create_task(conversation(urls, messages, run, sem, sent)) for _ in range(conversations)]
    if kill:
        total = conversations * messages
        while run.turns < total // 3 and not all(t.done() for t in tasks):
            await asyncio.sleep(0.2)
        victims = ["api-1"] + (["rasa-1"] if product.rasa > 1 else [])
        for name in victims:
            pid = product.pid(name)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                    run.killed.append(f"{name} (pid {pid}) after {run.turns} turns")
                except ProcessLookupError:
                    pass
    await asyncio.gather(*tasks)
    run.wall_s = time.perf_counter() - started
    return sent


def one(pg: str, redis: str, api: int, rasa: int, args: argparse.Namespace, tmp: Path, kill: bool) -> Run:
    run = Run(label=f"({api},{rasa})" + (" kill" if kill else ""), api=api, rasa=rasa)
    product = Product(pg, redis, api, rasa, tmp)
    try:
        t0 = time.monotonic()
        product.start()
        print(f"{run.label}: ready in {time.monotonic() - t0:.0f} s", flush=True)
        warm = Run(label="warm-up", api=api, rasa=rasa)
        asyncio.run(drive(product, warm, api * 2, 2, api * 2, False))
        assert product.proc is not None
        before = cpu_by_kind(product.proc.pid)
        sent = asyncio.run(drive(product, run, args.conversations, args.messages, args.concurrency, kill))
        after = cpu_by_kind(product.proc.pid)
        run.cpu = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        check(product, sent, run)
    finally:
        product.stop()
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["1x1", "2x1", "2x2", "3x2"])
    parser.add_argument("--kill", nargs="*", default=["3x2"], help="configurations to run again with SIGKILLs")
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--pg", default=os.environ.get("CONCIERGE_CI_POSTGRES_URL",
                                                       "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        plan = [(c, False) for c in args.configs] + [(c, True) for c in args.kill]
        for config, kill in plan:
            api, rasa = (int(x) for x in config.lower().split("x"))
            runs.append(one(args.pg, args.redis, api, rasa, args, Path(tmp), kill))
    load = os.getloadavg()
    print(f"\nscale-out: {args.conversations} conversations × {args.messages} messages, {args.concurrency} at a "
          f"time, each message to a random api process; PostgreSQL + Redis; load average {load[0]:.1f}")
    print("| (api, Rasa) | turns | turns/s | p50 ms | p95 ms | fallbacks | resent | lost | duplicated | reordered | "
          "Rasa turns twice | CPU ms/turn api / Rasa / worker / launcher+front |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for r in runs:
        per = {k: 1000 * v / max(1, r.turns) for k, v in r.cpu.items()}
        if r.api == 1 and r.rasa <= 1:  # the plain `concierge run`: the launcher process is the api
            per["api"] = per.get("api", 0.0) + per.pop("launcher", 0.0)
        cpu = " / ".join(f"{per.get(k, 0.0):.1f}" for k in ("api", "rasa", "worker", "launcher"))
        if r.killed:  # the killed processes' CPU went with them, their replacements started mid-run
            cpu = "n/a (processes killed)"
        twice = str(r.turns_twice) if r.tracker_checked else "n/a"
        print(f"| {r.label} | {r.turns} | {r.turns / r.wall_s:.1f} | {statistics.median(r.latencies):.0f} | "
              f"{pct(r.latencies, 95):.0f} | {r.fallbacks} | {r.retries} | {r.lost} | {r.duplicated} | "
              f"{r.reordered} | {twice} | {cpu} |")
        # A turn the killed api process had sent to Rasa but not committed is asked of Rasa again by
        # the process that takes over (its replies are stored once): allowed only in a kill run.
        bad += r.lost + r.duplicated + r.reordered + (0 if r.killed else r.turns_twice)
    for r in runs:
        if r.killed:
            print(f"{r.label}: SIGKILLed {', '.join(r.killed)}; Rasa turns twice there are turns the killed "
                  "api process had in flight, asked again by the process that took its conversations over")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
