"""Where the api's CPU goes in a web-chat turn: CPU ms per turn by component, SQL statements and rows
written per turn, Redis commands per turn, and a flame graph.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/turn_profile.py [--sessions 1] [--turns 100]
        [--database-url postgresql+psycopg://…] [--redis] [--plain] [--out benchmarks/profile]

Starts Rasa and the api (``concierge serve``'s app, run by this file with ``--serve`` so a CPU
sampler and SQLAlchemy statement counters run inside it), warms up, then runs ``--sessions``
concurrent web-chat sessions × ``--turns`` turns (the script of benchmarks/turn_latency.py).

- api CPU ms per turn and Rasa CPU ms per turn: the processes' own user+system time (/proc) over
  the run, divided by the turns — the robust figure, independent of the sampler.
- by component: the sampler's CPU-weighted stacks (benchmarks/profiling.py), scaled to the api's
  CPU minus the sampler's own. ``--plain`` runs without the sampler (for the unperturbed total).
- SQL: statements per turn by kind (SELECT/INSERT/UPDATE/DELETE/COMMIT …) and writes per table.
- ``--redis``: the api uses a private ``redis-server`` (relay bus, rate limits), and the Redis
  commands per turn are read from its INFO commandstats.

Writes ``<out>/turn.collapsed`` (collapsed stacks, µs of CPU), ``<out>/turn.svg`` (flame graph) and
``<out>/turn.json`` (every figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.profiling import (
    CpuSampler,
    StatementCounter,
    breakdown,
    breakdown_table,
    flamegraph_svg,
    load_average,
    process_cpu_s,
    read_collapsed,
    top_functions,
    turn_cpu_s,
    write_collapsed,
)

CONTROL_ENV = "TURN_PROFILE_DIR"
SAMPLE_ENV = "TURN_PROFILE_SAMPLE"


# ---------------------------------------------------------------- inside the api process

def serve() -> int:
    """``concierge serve``, with the sampler and statement counter; SIGUSR1 resets, SIGUSR2 dumps."""
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    control = Path(os.environ[CONTROL_ENV])
    sampler = CpuSampler() if os.environ.get(SAMPLE_ENV, "1") == "1" else None
    counter = StatementCounter()
    counter.install()

    def reset(*_: Any) -> None:
        counter.reset()
        if sampler is not None:
            sampler.reset()
        (control / "reset").touch()

    def dump(*_: Any) -> None:
        stacks, own = sampler.snapshot() if sampler is not None else (Counter(), 0.0)
        write_collapsed(stacks, control / "stacks.collapsed")
        (control / "counts.json").write_text(json.dumps({"sql": counter.as_dict(), "sampler_cpu_s": own}))
        (control / "dumped").touch()

    signal.signal(signal.SIGUSR1, reset)
    signal.signal(signal.SIGUSR2, dump)
    if sampler is not None:
        sampler.start()
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                proxy_headers=False)  # as api/core_cli.py cmd_serve
    return 0


# ---------------------------------------------------------------- the driver

def _signal_and_wait(pid: int, sig: int, marker: Path, timeout: float = 30) -> None:
    marker.unlink(missing_ok=True)
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the api did not answer signal {sig}")
        time.sleep(0.05)


def redis_commandstats(port: int) -> Counter[str]:
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True, text=True,
                         check=True).stdout
    stats: Counter[str] = Counter()
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            calls = dict(kv.split("=") for kv in rest.split(","))["calls"]
            stats[name.removeprefix("cmdstat_")] = int(calls)
    return stats


def postgres_backends(database_url: str | None) -> list[int]:
    """The server processes serving connections to this benchmark's PostgreSQL database (none on SQLite)."""
    if not database_url or not database_url.startswith("postgresql"):
        return []
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    out = subprocess.run(["psql", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U",
                          url.username or "postgres", "-d", url.database or "postgres", "-At", "-c",
                          f"select pid from pg_stat_activity where datname = '{url.database}' "
                          "and pid <> pg_backend_pid()"], capture_output=True, text=True, check=True).stdout
    return [int(p) for p in out.split()]


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    from benchmarks._stack import free_port

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0:
            return proc, port
        time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


async def drive(api_url: str, sessions: int, turns: int) -> tuple[list[float], int]:
    import httpx

    from benchmarks.turn_latency import check_history, via_api

    limits = httpx.Limits(max_connections=sessions + 10)
    async with httpx.AsyncClient(base_url=api_url, timeout=600, limits=limits) as client:
        latencies: list[float] = []
        fallbacks: list[int] = []
        results = await asyncio.gather(*(via_api(client, turns, latencies, fallbacks) for _ in range(sessions)))
        bad = 0
        for sid, sent in results:
            lost, reordered = await check_history(client, sid, sent)
            bad += lost + reordered
    return latencies, bad + len(fallbacks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--turns", type=int, default=100, help="turns per session")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--redis", action="store_true",
                        help="give the api a private redis-server and count its commands")
    parser.add_argument("--plain", action="store_true", help="no sampler (unperturbed CPU figure; no flame graph)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/profile"))
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle api CPU measured first")
    args = parser.parse_args()
    if args.serve:
        return serve()

    from benchmarks._stack import HIGH_RATE_LIMITS, Stack

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        control = tmp / "control"
        control.mkdir()
        extra = {CONTROL_ENV: str(control), SAMPLE_ENV: "0" if args.plain else "1", **HIGH_RATE_LIMITS}
        redis_proc = None
        redis_port = 0
        if args.redis:
            redis_proc, redis_port = start_redis(tmp)
            extra["CONCIERGE_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        stack = Stack(tmp / "var", database_url=args.database_url, extra_env=extra,
                      api_argv=[sys.executable, str(Path(__file__).resolve()), "--serve"])
        try:
            stack.start()
            assert stack.api_proc is not None and stack.rasa_proc is not None
            api_pid, rasa_pid = stack.api_proc.pid, stack.rasa_proc.pid
            asyncio.run(drive(stack.api_url, 2, 5))  # warm-up: model graphs, connections, caches
            time.sleep(1.0)
            # What the api spends doing nothing (pollers, sweepers): per second, to take out of the per-turn
            # figure, which otherwise grows with the run's wall time (a loaded machine, a slow Rasa).
            _signal_and_wait(api_pid, signal.SIGUSR1, control / "reset")
            idle0 = process_cpu_s(api_pid)
            idle_started = time.perf_counter()
            time.sleep(args.idle)
            idle_cpu_per_s = (process_cpu_s(api_pid) - idle0) / (time.perf_counter() - idle_started)
            _signal_and_wait(api_pid, signal.SIGUSR2, control / "dumped")
            idle_sql = json.loads((control / "counts.json").read_text())["sql"]
            idle_s = time.perf_counter() - idle_started
            _signal_and_wait(api_pid, signal.SIGUSR1, control / "reset")
            redis_before = redis_commandstats(redis_port) if redis_proc else Counter()
            api_cpu0, rasa_cpu0 = process_cpu_s(api_pid), process_cpu_s(rasa_pid, children=True)
            pg0 = {pid: process_cpu_s(pid) for pid in postgres_backends(args.database_url)}
            load0 = load_average()
            started = time.perf_counter()
            latencies, bad = asyncio.run(drive(stack.api_url, args.sessions, args.turns))
            wall = time.perf_counter() - started
            api_cpu1, rasa_cpu1 = process_cpu_s(api_pid), process_cpu_s(rasa_pid, children=True)
            # PostgreSQL's side: the backends of this database (the api's pool and Rasa's own tracker
            # store if it used this server — here it does not); a backend opened during the run counts whole.
            pg1 = {pid: process_cpu_s(pid) for pid in postgres_backends(args.database_url)}
            pg_cpu = sum(cpu - pg0.get(pid, 0.0) for pid, cpu in pg1.items())
            load1 = load_average()
            redis_after = redis_commandstats(redis_port) if redis_proc else Counter()
            _signal_and_wait(api_pid, signal.SIGUSR2, control / "dumped")
            counts = json.loads((control / "counts.json").read_text())
            stacks = read_collapsed(control / "stacks.collapsed")
        finally:
            stack.stop()
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait()
    # The history check reads each conversation once more after the turns: a small share, excluded
    # neither from the CPU figure nor from the statement counts (one GET per session).
    turns = len(latencies)
    api_cpu = api_cpu1 - api_cpu0
    rasa_cpu = rasa_cpu1 - rasa_cpu0
    sampler_cpu = float(counts["sampler_cpu_s"])
    # Statements the idle api sends too (the WhatsApp ingester's poll, sweepers), at the idle rate: not
    # the turn's. Counts per turn are net of them.
    sql = counts["sql"]
    for part in ("kinds", "tables", "statements"):
        for key, n in idle_sql[part].items():
            sql[part][key] = sql[part].get(key, 0) - n * wall / idle_s
        sql[part] = {k: v for k, v in sql[part].items() if v > 0.005 * turns}
    sql["rows_written"] -= idle_sql["rows_written"] * wall / idle_s
    idle_statements_per_s = sum(idle_sql["kinds"].values()) / idle_s
    redis_calls = {k: redis_after[k] - redis_before.get(k, 0) for k in redis_after
                   if redis_after[k] - redis_before.get(k, 0) > 0}
    redis_calls.pop("info", None)
    latencies.sort()
    result: dict[str, Any] = {
        "sessions": args.sessions, "turns": turns, "wall_s": wall, "database": args.database_url or "sqlite",
        "sampled": not args.plain, "load_average": [load0, load1],
        "api_cpu_ms_per_turn": api_cpu * 1000 / turns,
        "api_cpu_ms_per_turn_without_sampler": (api_cpu - sampler_cpu) * 1000 / turns,
        "api_idle_cpu_ms_per_s": idle_cpu_per_s * 1000,
        "api_idle_sql_statements_per_s": idle_statements_per_s,
        "api_cpu_ms_per_turn_net_of_idle": (api_cpu - sampler_cpu - idle_cpu_per_s * wall) * 1000 / turns,
        "rasa_cpu_ms_per_turn": rasa_cpu * 1000 / turns,
        "postgres_cpu_ms_per_turn": pg_cpu * 1000 / turns if pg1 else None,
        "p50_ms": latencies[len(latencies) // 2], "lost_reordered_or_fallback": bad,
        "sql_per_turn": {k: v / turns for k, v in sorted(sql["kinds"].items())},
        "writes_per_turn": {k: v / turns for k, v in sorted(sql["tables"].items(), key=lambda kv: -kv[1])},
        "rows_written_per_turn": sql["rows_written"] / turns,
        "audit_head_held_ms_per_turn": sql["head_held_s"] * 1000 / turns,
        "audit_head_holds_per_turn": sql["head_holds"] / turns,
        "statements_per_turn": {k: v / turns for k, v in sql["statements"].items()},
        "redis_commands_per_turn": {k: v / turns for k, v in sorted(redis_calls.items())},
        "components_ms_per_turn": {k: v[0] * 1000 / turns for k, v in breakdown(stacks).items()},
        "api_turn_cpu_ms_sampled": turn_cpu_s(stacks, api_cpu - sampler_cpu) * 1000 / turns if stacks else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "turn.json").write_text(json.dumps(result, indent=2))
    if stacks:
        write_collapsed(stacks, args.out / "turn.collapsed")
        (args.out / "turn.svg").write_text(flamegraph_svg(
            stacks, f"api CPU in {turns} web-chat turns ({args.sessions} session(s), "
                    f"{result['database'].split(':')[0]}); sampled CPU, benchmarks/turn_profile.py"))

    print(f"\n{turns} turns ({args.sessions} session(s) × {args.turns}), {wall:.1f} s, database "
          f"{result['database'].split(':')[0]}, load average {load0} → {load1}")
    print(f"api CPU: {result['api_cpu_ms_per_turn']:.1f} ms/turn"
          + ("" if args.plain else f" ({result['api_cpu_ms_per_turn_without_sampler']:.1f} without the sampler's own)")
          + f"; Rasa CPU: {result['rasa_cpu_ms_per_turn']:.1f} ms/turn; p50 {result['p50_ms']:.1f} ms")
    if result["postgres_cpu_ms_per_turn"] is not None:
        print(f"PostgreSQL CPU (this database's backends, incl. the idle polls): "
              f"{result['postgres_cpu_ms_per_turn']:.1f} ms/turn")
    print(f"api idle: {result['api_idle_cpu_ms_per_s']:.1f} ms CPU and {idle_statements_per_s:.1f} SQL statements "
          f"per second (pollers, sweepers); api CPU per turn net of that: "
          f"{result['api_cpu_ms_per_turn_net_of_idle']:.1f} ms")
    if stacks:
        print("\napi CPU by component (sampled, scaled to the api's CPU without the sampler):\n")
        print(breakdown_table(stacks, turns, api_cpu - sampler_cpu))
        print(f"\napi CPU of the turn itself (sampled, idle work left out): {result['api_turn_cpu_ms_sampled']:.1f} ms")
        print("\nself CPU, top functions (ms/turn, sampled, unscaled):\n" + top_functions(stacks, turns))
    print("\nSQL statements per turn (net of the idle rate): "
          + ", ".join(f"{k} {v:.2f}" for k, v in result["sql_per_turn"].items()))
    print(f"rows written per turn: {result['rows_written_per_turn']:.2f}; by statement: "
          + ", ".join(f"{k} {v:.2f}" for k, v in result["writes_per_turn"].items()))
    print(f"audit chain head held: {result['audit_head_held_ms_per_turn']:.1f} ms per turn "
          f"({result['audit_head_holds_per_turn']:.2f} transactions; all processes queue for it)")
    if args.redis:
        print("Redis commands per turn: " + (", ".join(f"{k} {v:.2f}" for k, v in
                                                      result["redis_commands_per_turn"].items()) or "none"))
    if bad:
        print(f"!! {bad} turns lost, reordered or answered by the fallback")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
