"""Live relay latency: HCP message → staff console stream, and staff reply → HCP stream.

    .venv/bin/python benchmarks/relay_latency.py [--scenarios 1:1,10:3,20:3,20:0.5] [--rounds 10]
        [--database sqlite|postgres] [--bus memory|redis] [--all] [--out benchmarks/RESULTS-relay.md]

The api runs for real: ``concierge serve`` on a free loopback port (its own process, the real safety
screen, the relay bus chosen by ``CONCIERGE_REDIS_URL``); with ``--bus redis`` two api processes share
the database and Redis, the HCPs talking to one and the reps to the other. No Rasa: the
conversations are with a human. Setup goes through the product: web chat sessions over HTTP, a
handoff queued per conversation (``open_handoff``, as the bot does), staff logged in with email +
password, each handoff claimed through the inbox API. Every conversation then has two live streams
open: the claiming rep's console stream (``/api/staff/conversations/{id}/events``) and the HCP's web
chat stream (``/api/webchat/sessions/{id}/events``). A scenario ``N:think`` runs N conversations at
once; in each, ``--rounds`` times:

  (a) the HCP POSTs a message              → until the ``message`` event arrives on the staff stream;
  (b) the rep POSTs a reply (inbox reply)  → until the ``message`` event arrives on the HCP stream;

with ``think`` seconds between turns. Latency is from just before the POST to the event's arrival
at the reader (loopback; both clients in this process). Before the traffic, the api's CPU use with
every stream open and idle is measured (the streams' periodic re-checks). Finally, with the last
scenario's streams still open, the api is sent SIGTERM and the time it takes to exit is reported
(open streams must not stall a graceful shutdown).

``--all`` runs SQLite and PostgreSQL (a scratch database on ``--postgres-url``) × the in-process bus
and Redis (``--redis-url``) and writes the markdown report with ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy.orm import sessionmaker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.scratch_db import create_database, drop_database  # noqa: E402
from benchmarks._stack import Stack, pct  # noqa: E402

PASSWORD = "relay benchmark password 1"
COOKIE = "concierge_staff"


# ---------------------------------------------------------------- streams


class Stream:
    """One SSE connection; ``expect(marker)`` returns a future resolved with the arrival time."""

    def __init__(self, client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> None:
        self.client, self.url, self.headers = client, url, headers or {}
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.events = 0
        self.task = asyncio.create_task(self._run())

    def expect(self, marker: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[marker] = fut
        return fut

    async def _run(self) -> None:
        headers = {"accept": "text/event-stream", **self.headers}
        async with self.client.stream("GET", self.url, headers=headers) as resp:
            if resp.status_code != 200:
                self.opened.set_exception(RuntimeError(f"{self.url}: HTTP {resp.status_code} {await resp.aread()!r}"))
                return
            self.opened.set_result(None)
            buffer = ""
            async for chunk in resp.aiter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    self._block(block, time.perf_counter())

    def _block(self, block: str, at: float) -> None:
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if name != "message" or not data:
            return
        self.events += 1
        body = json.loads("\n".join(data)).get("body", "")
        for marker in [m for m in self.waiting if m in body]:
            fut = self.waiting.pop(marker)
            if not fut.done():
                fut.set_result(at)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self.task


# ---------------------------------------------------------------- one run


@dataclass
class Conv:
    token: str
    conversation_id: str
    handoff_id: str
    rep: dict[str, str]


@dataclass
class RunResult:
    database: str
    bus: str
    processes: int
    conversations: int
    rounds: int
    think: float
    load: float  # 1-minute load average of the machine when the scenario started
    to_staff: list[float] = field(default_factory=list)
    to_hcp: list[float] = field(default_factory=list)
    hcp_post: list[float] = field(default_factory=list)  # the POST's own round trip, for context
    staff_post: list[float] = field(default_factory=list)
    # arrival minus the moment the POST's response was read (negative: the event came first)
    after_hcp_post: list[float] = field(default_factory=list)
    after_staff_post: list[float] = field(default_factory=list)
    lost: int = 0
    idle_cpu: float = 0.0  # % of one core the api processes used with every stream open and idle
    cpu_per_round: float = 0.0  # api CPU ms per round (one message each way), streams included
    streams: bool = True

    def row(self) -> str:
        a, b, c, d = self.to_staff, self.to_hcp, self.hcp_post, self.staff_post
        e, f = self.after_hcp_post, self.after_staff_post
        head = (f"| {self.database} | {self.bus} ({self.processes} api) | {self.conversations} × {self.rounds}, "
                f"{self.think:g} s{'' if self.streams else ', **no streams**'} | ")
        if self.streams:
            live = (f"{pct(a, 50):.0f} | **{pct(a, 95):.0f}** | {max(a):.0f} | "
                    f"{pct(b, 50):.0f} | **{pct(b, 95):.0f}** | {max(b):.0f} | {self.lost} | ")
            after = (f"{pct(e, 50):+.0f} / {pct(e, 95):+.0f} | {pct(f, 50):+.0f} / {pct(f, 95):+.0f} | "
                     f"{self.idle_cpu:.1f} % | ")
        else:
            live, after = "– | – | – | – | – | – | – | ", "– | – | – | "
        return (head + live + f"{pct(c, 50):.0f} / {pct(c, 95):.0f} | {pct(d, 50):.0f} / {pct(d, 95):.0f} | "
                + after + f"{self.cpu_per_round:.0f} | {self.load:.1f} |")


HEADER = ("| database | bus | conversations × rounds, think | HCP→console p50 | p95 | max | console→HCP p50 | p95 "
          "| max | lost | HCP POST p50 / p95 | reply POST p50 / p95 | console event after HCP POST returned p50 / p95 "
          "| HCP event after reply POST returned p50 / p95 | api CPU, streams idle | api CPU ms per round "
          "| load avg |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _create_staff(database_url: str, reps: int) -> list[dict[str, str]]:
    """Staff accounts (the product's service, as ``concierge staff create`` does)."""
    from api.clock import SystemClock
    from api.db import make_engine, unit_of_work
    from api.staff import service as staff_service

    engine = make_engine(database_url)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    accounts = []
    with unit_of_work(factory) as s:
        for i in range(reps):
            email = f"bench-rep-{i}-{uuid.uuid4().hex[:6]}@halcyon.example"
            user = staff_service.create(s, email=email, password=PASSWORD, roles=["rep"], name=f"Bench Rep {i}",
                                        territory=None, now=SystemClock().now())
            accounts.append({"id": user.id, "email": email})
    engine.dispose()
    return accounts


def _queue_handoffs(database_url: str, tokens: list[str]) -> list[tuple[str, str]]:
    """A handoff per conversation, queued the way the bot queues one (``open_handoff``)."""
    from api.conversations import service as conversations
    from api.db import make_engine, unit_of_work
    from api.handoffs.service import open_handoff

    engine = make_engine(database_url)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    out = []
    with unit_of_work(factory) as s:
        for token in tokens:
            conv = conversations.get_by_session_token(s, token)
            h = open_handoff(s, conv, target="rep", reason="hcp_request", now=datetime.now(UTC))
            out.append((conv.id, h.id))
    engine.dispose()
    return out


async def _login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    """The console login form; returns the headers later requests of this rep carry."""
    page = await client.get("/console/login")  # sets the login form's CSRF cookie
    token = re.search(r'name="csrf" value="([^"]*)"', page.text)
    assert token, "login page without its CSRF field"
    res = await client.post("/console/login", data={"email": email, "password": PASSWORD, "next": "/console",
                                                    "csrf": token.group(1)})
    if res.status_code != 303:
        raise RuntimeError(f"login failed: {res.status_code} {res.text[:200]}")
    token = res.cookies.get(COOKIE)
    client.cookies.clear()  # each rep's requests carry their own cookie header
    cookie = {"cookie": f"{COOKIE}={token}"}
    home = await client.get("/console", headers=cookie)
    csrf = home.text.split('<meta name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return {**cookie, "x-csrf-token": csrf}


def _wait_warm(api_url: str, timeout: float = 600.0) -> None:
    """Wait until the api's background warm-ups (knowledge index, safety screen) are done: until
    then they load models and, on SQLite, the knowledge warm-up holds the write lock."""
    deadline = time.monotonic() + timeout
    checks: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        try:
            checks = httpx.get(f"{api_url}/readyz", timeout=5).json()["checks"]
        except (httpx.HTTPError, ValueError, KeyError):
            checks = {}
        if checks and checks["knowledge"]["ok"] and checks["safety_screen"]["ok"]:
            return
        time.sleep(1.0)
    print(f"warning: warm-ups not finished after {timeout:.0f} s: {checks}", flush=True)


@dataclass
class Scenario:
    conversations: int
    rounds: int
    think: float
    streams: bool = True  # False: the same traffic with no stream open (what the relay itself costs)


async def _scenario(hcp_api: str, staff_api: str, database_url: str, logins: list[dict[str, str]],
                    sc: Scenario, result: RunResult, pids: list[int]) -> list[Stream]:
    """One scenario on fresh conversations; returns its streams, still open."""
    n = sc.conversations
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them under a request.
    limits = httpx.Limits(max_connections=4 * n + 20, max_keepalive_connections=4 * n + 20, keepalive_expiry=2.0)
    timeout = httpx.Timeout(30.0, read=None)
    hcp = httpx.AsyncClient(base_url=hcp_api, timeout=timeout, limits=limits)
    staff = httpx.AsyncClient(base_url=staff_api, timeout=timeout, limits=limits)
    tokens = []
    for _ in range(n):
        res = await hcp.post("/api/webchat/sessions")
        res.raise_for_status()
        tokens.append(res.json()["session_id"])
    queued = _queue_handoffs(database_url, tokens)
    convs = []
    for i, (token, (conv_id, handoff_id)) in enumerate(zip(tokens, queued, strict=True)):
        rep = logins[i % len(logins)]
        res = await staff.post(f"/api/staff/inbox/{handoff_id}/claim", json={}, headers=rep)
        if res.status_code != 200:
            raise RuntimeError(f"claim failed: {res.status_code} {res.text[:300]}")
        convs.append(Conv(token, conv_id, handoff_id, rep))
    staff_streams: list[Stream] = []
    hcp_streams: list[Stream] = []
    if sc.streams:
        staff_streams = [Stream(staff, f"/api/staff/conversations/{c.conversation_id}/events?after=0",
                                {"cookie": c.rep["cookie"]}) for c in convs]
        hcp_streams = [Stream(hcp, f"/api/webchat/sessions/{c.token}/events?after=0") for c in convs]
        await asyncio.gather(*(s.opened for s in staff_streams + hcp_streams))
        await asyncio.sleep(2.0)  # backlog sent
        before, t0 = cpu_seconds(pids), time.perf_counter()
        await asyncio.sleep(10.0)  # every stream open, nothing happening: what do the re-reads cost?
        result.idle_cpu = 100 * (cpu_seconds(pids) - before) / (time.perf_counter() - t0)
    result.load = os.getloadavg()[0]

    async def wait(arrival: asyncio.Future[float] | None, t0: float, t1: float, to: list[float],
                   after: list[float]) -> None:
        if arrival is None:
            return
        try:
            at = await asyncio.wait_for(arrival, 10.0)
        except TimeoutError:
            result.lost += 1
            return
        to.append((at - t0) * 1000)
        after.append((at - t1) * 1000)

    async def conversation(i: int) -> None:
        c = convs[i]
        staff_stream = staff_streams[i] if sc.streams else None
        hcp_stream = hcp_streams[i] if sc.streams else None
        await asyncio.sleep(2 * sc.think * i / max(n, 1))  # spread the starts over one round
        for r in range(sc.rounds):
            marker = f"m{uuid.uuid4().hex[:10]}"
            arrival = staff_stream.expect(marker) if staff_stream else None
            t0 = time.perf_counter()
            res = await hcp.post(f"/api/webchat/sessions/{c.token}/messages",
                                 json={"text": f"Question {r} from the HCP {marker}"})
            res.raise_for_status()
            t1 = time.perf_counter()
            result.hcp_post.append((t1 - t0) * 1000)
            await wait(arrival, t0, t1, result.to_staff, result.after_hcp_post)
            await asyncio.sleep(sc.think)
            marker = f"r{uuid.uuid4().hex[:10]}"
            arrival = hcp_stream.expect(marker) if hcp_stream else None
            t0 = time.perf_counter()
            res = await staff.post(f"/api/staff/inbox/{c.handoff_id}/reply",
                                   json={"text": f"Answer {r} from the rep {marker}"}, headers=c.rep)
            res.raise_for_status()
            t1 = time.perf_counter()
            result.staff_post.append((t1 - t0) * 1000)
            await wait(arrival, t0, t1, result.to_hcp, result.after_staff_post)
            await asyncio.sleep(sc.think)

    cpu_before = cpu_seconds(pids)
    await asyncio.gather(*(conversation(i) for i in range(n)))
    result.cpu_per_round = 1000 * (cpu_seconds(pids) - cpu_before) / (n * sc.rounds)
    return staff_streams + hcp_streams


async def _drive(stacks: list[Stack], database: str, bus: str, scenarios: list[Scenario],
                 reps: int) -> tuple[list[RunResult], float]:
    hcp_api, staff_api = stacks[0].api_url, stacks[-1].api_url
    pids = [s.api_proc.pid for s in stacks if s.api_proc is not None]
    accounts = _create_staff(stacks[0].database_url, reps)
    async with httpx.AsyncClient(base_url=staff_api, timeout=30.0) as client:
        logins = [await _login(client, a["email"]) for a in accounts]
        # Warm each api's safety screen (loaded in the background at start-up) before timing anything.
        for stack in stacks:
            token = (await client.post(f"{stack.api_url}/api/webchat/sessions")).json()["session_id"]
            (await client.post(f"{stack.api_url}/api/webchat/sessions/{token}/messages",
                               json={"text": "hello"})).raise_for_status()
    results, open_streams = [], []
    for sc in scenarios:
        result = RunResult(database=database, bus=bus, processes=len(stacks), conversations=sc.conversations,
                           rounds=sc.rounds, think=sc.think, load=0.0, streams=sc.streams)
        open_streams = await _scenario(hcp_api, staff_api, stacks[0].database_url, logins, sc, result, pids)
        results.append(result)
        print(result.row(), flush=True)
        if sc is not scenarios[-1]:
            for stream in open_streams:
                await stream.close()
    # Stop the apis with the last scenario's streams still open: SIGTERM → exit.
    t0 = time.perf_counter()
    for stack in stacks:
        assert stack.api_proc is not None
        os.killpg(stack.api_proc.pid, signal.SIGTERM)
    while any(s.api_proc is not None and s.api_proc.poll() is None for s in stacks) \
            and time.perf_counter() - t0 < 60:
        await asyncio.sleep(0.05)
    shutdown = time.perf_counter() - t0
    for stream in open_streams:
        await stream.close()
    return results, shutdown


def run_one(database: str, bus: str, scenarios: list[Scenario],
            args: argparse.Namespace) -> tuple[list[RunResult], float]:
    """One database × bus: memory = one api process; redis = two (the HCP on one, staff on the other)."""
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    if database == "postgres":
        db_url = create_database(args.postgres_url, "relay_bench")
    else:
        db_url = f"sqlite:///{tmp / 'bench.db'}"
    env = {"CONCIERGE_REDIS_URL": args.redis_url if bus == "redis" else ""}
    cached_models = REPO / "var" / "models"
    if cached_models.exists():
        env["CONCIERGE_MODEL_DIR"] = str(cached_models)
    stacks = [Stack(tmp / f"api{i}", database_url=db_url, with_rasa=False, extra_env=env)
              for i in range(2 if bus == "redis" else 1)]
    try:
        for stack in stacks:
            # One at a time: a starting api's knowledge warm-up holds SQLite's write lock while it
            # loads its model, and the next one's migration check would time out behind it.
            stack.start()
            _wait_warm(stack.api_url)
            print(f"api up: {database}, bus {bus} ({stack.api_url}, log {stack.var_dir / 'api.log'})", flush=True)
        return asyncio.run(_drive(stacks, database, bus, scenarios, args.reps))
    finally:
        for stack in stacks:
            stack.stop()
        if database == "postgres":
            drop_database(db_url)


def report(results: list[RunResult], shutdowns: list[tuple[str, float]], args: argparse.Namespace,
           started: str) -> str:
    combos = "--all" if args.all else f"--database {args.database} --bus {args.bus}"
    lines = [
        "# Live relay — latency benchmark",
        "",
        f"Run {started} on the shared 2-core development box while other work was running (load"
        " average in the last column: figures are upper bounds for an idle machine). Command:",
        "",
        "```",
        f".venv/bin/python benchmarks/relay_latency.py {combos} --scenarios {args.scenarios} --reps {args.reps}",
        "```",
        "",
        "`concierge serve` on loopback (real safety screen; no Rasa — the conversations are with a human)."
        " With the Redis bus two api processes share the database: the HCPs talk to one, the reps to the"
        " other, so every event crosses processes through Redis pub/sub. Per scenario: N web chat"
        f" conversations handed off and claimed through the inbox API by {args.reps} reps, each with the"
        " rep's console stream and the HCP's web chat stream open; all N talk at once, one turn each way"
        " per round, `think` seconds between turns. Latency: from just before the POST to the `message`"
        " event read from the other side's stream, in ms. The POST columns are the requests' own round"
        " trips for comparison (the HCP's POST returns once the message is screened and stored, the"
        " reply's once it is stored and delivered); the two \"after … returned\" columns are what the relay"
        " adds on top of the write itself (arrival minus the moment the POST's response was read; negative:"
        " the event was on the other screen before the sender's request returned)."
        " `api CPU, streams idle`: the api processes' CPU over"
        " 10 s with all 2N streams open and nothing happening (their 2 s re-checks). `api CPU ms per round`:"
        " the api processes' CPU time during the traffic divided by the rounds (one message each way),"
        " a load-independent cost; the *no streams* row is the same traffic with no stream open, so the"
        " difference is what the relay costs per round.",
        "",
        HEADER,
        *[r.row() for r in results],
        "",
        "`lost`: events that did not arrive within 10 s. Exit on SIGTERM with the last scenario's streams"
        " still open: " + ", ".join(f"{name} {secs:.1f} s" for name, secs in shutdowns) + ".",
        "",
    ]
    return "\n".join(lines)


def parse_scenarios(text_: str, rounds: int) -> list[Scenario]:
    out = []
    for part in text_.split(","):
        fields = part.split(":")
        n, think, flags = fields[0], fields[1] if len(fields) > 1 else "1", fields[2:]
        out.append(Scenario(conversations=int(n), rounds=rounds, think=float(think),
                            streams="nostreams" not in flags))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", default="1:1,10:3:nostreams,10:3,20:3,20:0.5",
                    help="comma-separated N:think[:nostreams] (conversations at once : seconds between turns;"
                         " nostreams: the same traffic without any stream open, for comparison)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5, help="staff accounts sharing the conversations")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--bus", choices=("memory", "redis"), default="memory")
    ap.add_argument("--all", action="store_true", help="sqlite and postgres × memory and redis")
    ap.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = ap.parse_args()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scenarios = parse_scenarios(args.scenarios, args.rounds)
    combos = ([(d, b) for d in ("sqlite", "postgres") for b in ("memory", "redis")] if args.all
              else [(args.database, args.bus)])
    results: list[RunResult] = []
    shutdowns: list[tuple[str, float]] = []
    print(HEADER)
    for database, bus in combos:
        found, shutdown = run_one(database, bus, scenarios, args)
        results.extend(found)
        shutdowns.append((f"{database}/{bus}", shutdown))
        print(f"   api exit on SIGTERM with streams open: {shutdown:.1f} s", flush=True)
    text_ = report(results, shutdowns, args, started)
    if args.out is not None:
        args.out.write_text(text_)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
