"""Turn latency through api + real Rasa, against the same turns sent straight to Rasa.

    .venv/bin/python benchmarks/turn_latency.py [--sessions 1 10 50] [--turns 20]

For each N: N concurrent web-chat sessions each do ``--turns`` turns in sequence; the
same number of turns then goes straight to Rasa's REST webhook with the same concurrency.
Reports p50/p95/p99 latency, throughput, the api's overhead at p95, lost or reordered
messages (checked from each conversation's history), the CPU each process used per turn through the
api (user + system time from /proc: the figure that does not depend on what else the machine runs),
the load average, and the RSS of both processes. Where that CPU goes: benchmarks/turn_profile.py.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from api.conversations.copy import RASA_FALLBACK
from benchmarks._stack import HIGH_RATE_LIMITS, Stack, pct, rss_mb
from benchmarks.profiling import load_average, process_cpu_s

# Turns that exercise NLU + dialogue without changing the conversation's state.
SCRIPT = ["hello", "thanks", "are you a bot?", "what's the weather tomorrow", "ok", "good morning",
          "thank you very much", "tell me a joke", "hi there", "cheers"]


async def via_api(client: httpx.AsyncClient, turns: int, latencies: list[float],
                  fallbacks: list[int]) -> tuple[str, list[str]]:
    sid = (await client.post("/api/webchat/sessions")).json()["session_id"]
    sent = []
    for i in range(turns):
        text = f"{SCRIPT[i % len(SCRIPT)]}"
        started = time.perf_counter()
        r = await client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": text})
        latencies.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
        if any(m["text"] == RASA_FALLBACK for m in r.json()["messages"]):
            fallbacks.append(1)  # Rasa missed the api's deadline: the HCP got the safe fallback
        sent.append(text)
    return sid, sent


async def via_rasa(client: httpx.AsyncClient, sender: str, turns: int, latencies: list[float]) -> None:
    for i in range(turns):
        started = time.perf_counter()
        r = await client.post("/webhooks/rest/webhook",
                              json={"sender": sender, "message": SCRIPT[i % len(SCRIPT)]})
        latencies.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()


def new_conversations(stack: Stack, n: int) -> list[str]:
    from api.clock import utcnow
    from api.conversations import service as conversations
    from api.db import import_all_models, make_engine, make_session_factory, unit_of_work

    import_all_models()
    engine = make_engine(stack.database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            return [conversations.create_webchat(session, now=utcnow(), market="US")[0].id for _ in range(n)]
    finally:
        engine.dispose()


async def check_history(client: httpx.AsyncClient, sid: str, sent: list[str]) -> tuple[int, int]:
    """(lost, reordered) for one conversation."""
    history = (await client.get(f"/api/webchat/sessions/{sid}/messages")).json()["messages"]
    inbound = [m["text"] for m in history if m["direction"] == "in"]
    lost = len(sent) - len(inbound)
    reordered = 0 if inbound == sent else 1
    # every inbound has at least one reply before the next inbound
    expect_reply = False
    for m in history:
        if m["direction"] == "in":
            if expect_reply:
                lost += 1
            expect_reply = True
        else:
            expect_reply = False
    return lost, reordered


async def run_level(stack: Stack, n: int, turns: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=600, limits=limits) as api, \
            httpx.AsyncClient(base_url=stack.rasa_url, timeout=600, limits=limits) as rasa:
        api_lat: list[float] = []
        fallbacks: list[int] = []
        assert stack.api_proc is not None and stack.rasa_proc is not None
        cpu_before = process_cpu_s(stack.api_proc.pid), process_cpu_s(stack.rasa_proc.pid, children=True)
        load = load_average()
        started = time.perf_counter()
        results = await asyncio.gather(*(via_api(api, turns, api_lat, fallbacks) for _ in range(n)))
        api_wall = time.perf_counter() - started
        api_cpu = process_cpu_s(stack.api_proc.pid) - cpu_before[0]
        rasa_cpu = process_cpu_s(stack.rasa_proc.pid, children=True) - cpu_before[1]
        lost = reordered = 0
        for sid, sent in results:
            lo, re = await check_history(api, sid, sent)
            lost += lo
            reordered += re
        rasa_lat: list[float] = []
        # Rasa's custom actions run on the api and only serve known conversations: the direct
        # senders are real conversation rows, as the api's own turns are.
        senders = new_conversations(stack, n)
        rasa_alone_before = process_cpu_s(stack.rasa_proc.pid, children=True), process_cpu_s(stack.api_proc.pid)
        started = time.perf_counter()
        await asyncio.gather(*(via_rasa(rasa, sender, turns, rasa_lat) for sender in senders))
        rasa_wall = time.perf_counter() - started
        rasa_alone_cpu = process_cpu_s(stack.rasa_proc.pid, children=True) - rasa_alone_before[0]
        api_during_rasa = process_cpu_s(stack.api_proc.pid) - rasa_alone_before[1]
    return {
        "n": n, "turns": len(api_lat),
        "api_p50": pct(api_lat, 50), "api_p95": pct(api_lat, 95), "api_p99": pct(api_lat, 99),
        "api_tput": len(api_lat) / api_wall,
        "rasa_p50": pct(rasa_lat, 50), "rasa_p95": pct(rasa_lat, 95), "rasa_p99": pct(rasa_lat, 99),
        "rasa_tput": len(rasa_lat) / rasa_wall,
        "overhead_p95": pct(api_lat, 95) - pct(rasa_lat, 95),
        "overhead_p50": statistics.median(api_lat) - statistics.median(rasa_lat),
        "lost": lost, "reordered": reordered, "fallbacks": len(fallbacks),
        "api_cpu_ms": api_cpu * 1000 / max(1, len(api_lat)), "rasa_cpu_ms": rasa_cpu * 1000 / max(1, len(api_lat)),
        # Rasa straight: its own CPU per turn, and the api's (its custom actions run there)
        "rasa_alone_cpu_ms": rasa_alone_cpu * 1000 / max(1, len(rasa_lat)),
        "api_in_rasa_alone_cpu_ms": api_during_rasa * 1000 / max(1, len(rasa_lat)),
        "api_cores": (api_cpu + rasa_cpu) / api_wall, "rasa_cores": (rasa_alone_cpu + api_during_rasa) / rasa_wall,
        "load": load,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), database_url=args.database_url, extra_env=HIGH_RATE_LIMITS).start()
        try:
            asyncio.run(run_level(stack, 2, 3))  # warm-up: model graphs, connections
            rows = [asyncio.run(run_level(stack, n, args.turns)) for n in args.sessions]
            assert stack.api_proc is not None and stack.rasa_proc is not None
            api_rss, rasa_rss = rss_mb(stack.api_proc.pid), rss_mb(stack.rasa_proc.pid)
        finally:
            stack.stop()
    print(f"\nturn latency, {args.turns} turns per session (ms); api = web chat API -> worker -> Rasa; "
          "rasa = straight to Rasa's REST webhook")
    print("| N | turns | api p50 | api p95 | api p99 | api turns/s | rasa p50 | rasa p95 | rasa p99 | "
          "rasa turns/s | api/rasa turns/s | api overhead p50 | api overhead p95 | api CPU ms/turn | "
          "Rasa CPU ms/turn | Rasa alone: Rasa + api (actions) CPU ms/turn | cores busy api run / Rasa run | "
          "lost | reordered | Rasa deadline missed | load average |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['turns']} | {r['api_p50']:.1f} | {r['api_p95']:.1f} | {r['api_p99']:.1f} | "
              f"{r['api_tput']:.1f} | {r['rasa_p50']:.1f} | {r['rasa_p95']:.1f} | {r['rasa_p99']:.1f} | "
              f"{r['rasa_tput']:.1f} | {r['api_tput'] / r['rasa_tput']:.2f} | {r['overhead_p50']:+.1f} | "
              f"{r['overhead_p95']:+.1f} | {r['api_cpu_ms']:.1f} | {r['rasa_cpu_ms']:.1f} | "
              f"{r['rasa_alone_cpu_ms']:.1f} + {r['api_in_rasa_alone_cpu_ms']:.1f} | "
              f"{r['api_cores']:.2f} / {r['rasa_cores']:.2f} | {r['lost']} | "
              f"{r['reordered']} | {r['fallbacks']} | {r['load']} |")
    print(f"\nRSS after the run: api {api_rss:.0f} MiB, rasa {rasa_rss:.0f} MiB")
    bad = sum(r["lost"] + r["reordered"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
