"""Scale-out on PostgreSQL + Redis: (api processes, Rasa replicas, workers) = (1,1,1) … (3,2,2), and kill runs.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale_out.py [--configs 1x1 2x1 2x2 3x2]
        [--conversations 40] [--messages 10] [--concurrency 10] [--kill 3x2] [--lease 10]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/9]

A configuration ``NxM`` is N api processes and M Rasa replicas, with 2 WhatsApp workers when N >= 3
and 1 otherwise (``NxMxK`` says K). Each starts as ``concierge run --api-processes N --rasa-replicas M
--workers K --no-demo-data`` on a fresh PostgreSQL database and Rasa tracker database, Twilio being a
fake served by this script; ``--concurrency`` HCPs at a time each play their script
(``benchmarks/scale_scenario.py``): half on the web chat, half on WhatsApp (signed Twilio webhooks),
every message to a randomly chosen api process; small talk, a samples form over several messages in
half of the conversations, an adverse-event report in every third.

Checked afterwards (``scale_scenario.check``): messages lost, duplicated, reordered (stored,
processed or answered out of the order sent); turns Rasa saw twice (its SQL tracker store); every
form started has its request with the slots given; every adverse-event report has its safety case
(linked to the message, day 0 set); every WhatsApp reply went through the fake Twilio exactly once.

``--kill NxM`` adds a run of that configuration in which, a third of the way through and with forms
in progress, ``api-1`` and (M > 1) ``rasa-1`` are SIGKILLed; the supervisor restarts them. Reported
for it: how long after the kill everything stored before it was processed (the killed process's
leases lapse after ``--lease`` seconds), and turns run again.

Also reported: turns/s, p50/p95 per message (web chat: the POST; WhatsApp: the webhook until the
replies were handed to Twilio), fallbacks (the HCP got the safe fallback: Rasa missed the deadline or
died), resent requests, and CPU ms per turn by process kind. This host has 2 cores: the point is
correctness and the overhead of the extra processes, not speed-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._stack import pct  # noqa: E402
from benchmarks.scale_scenario import (  # noqa: E402
    FakeTwilioServer,
    Findings,
    Load,
    Product,
    check,
    run_scenario,
    scripts,
)


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
    workers: int
    load: Load
    found: Findings
    cpu: dict[str, float] = field(default_factory=dict)


def parse_config(config: str) -> tuple[int, int, int]:
    parts = [int(x) for x in config.lower().split("x")]
    if len(parts) == 2:
        return parts[0], parts[1], 2 if parts[0] >= 3 else 1
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise SystemExit(f"a configuration is NxM or NxMxK, not {config!r}")


def one(pg: str, redis: str, config: str, args: argparse.Namespace, tmp: Path, kill: bool,
        twilio: FakeTwilioServer) -> Run:
    api, rasa, workers = parse_config(config)
    label = f"({api},{rasa},{workers})" + (" kill" if kill else "")
    env = {"CONCIERGE_CONVERSATION_LEASE_S": str(args.lease), "CONCIERGE_INBOX_SWEEP_INTERVAL_S": "2"}
    product = Product(pg, redis, api, rasa, tmp, workers=workers, twilio_url=twilio.url, extra_env=env)
    try:
        t0 = time.monotonic()
        product.start()
        print(f"{label}: ready in {time.monotonic() - t0:.0f} s", flush=True)
        run_scenario(product, twilio.twilio, scripts(api * 2, 2, seed=1), concurrency=api * 2, kill=False,
                     label="warm-up")
        assert product.proc is not None
        before = cpu_by_kind(product.proc.pid)
        load = run_scenario(product, twilio.twilio, scripts(args.conversations, args.messages),
                            concurrency=args.concurrency, kill=kill, label=label)
        after = cpu_by_kind(product.proc.pid)
        found = check(product, load, twilio.twilio)
        print(f"{label}: {load.turns} turns in {load.wall_s:.0f} s; {found}", flush=True)
        cpu = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    finally:
        product.stop()
    return Run(label, api, rasa, workers, load, found, cpu)


HEADER = ("| (api, Rasa, workers) | turns | turns/s | p50 ms | p95 ms | fallbacks | resent | lost | duplicated "
          "| reordered | Rasa turns twice | forms done / started | AE cases / reports | WhatsApp replies "
          "(sent twice, unsent) | CPU ms/turn api / Rasa / worker / launcher+front |")


def row(r: Run) -> str:
    load, found = r.load, r.found
    per = {k: 1000 * v / max(1, load.turns) for k, v in r.cpu.items()}
    if r.api == 1 and r.rasa <= 1 and r.workers == 1:  # the plain `concierge run`: the launcher is the api
        per["api"] = per.get("api", 0.0) + per.pop("launcher", 0.0)
    cpu = " / ".join(f"{per.get(k, 0.0):.1f}" for k in ("api", "rasa", "worker", "launcher"))
    if load.killed:  # the killed processes' CPU went with them, their replacements started mid-run
        cpu = "n/a (processes killed)"
    twice = str(found.turns_twice) if found.tracker_checked else "n/a"
    return (f"| {r.label} | {load.turns} | {load.turns / load.wall_s:.1f} | {statistics.median(load.latencies):.0f} "
            f"| {pct(load.latencies, 95):.0f} | {load.fallbacks} | {load.retries} | {found.lost} | "
            f"{found.duplicated} | {found.reordered} | {twice} | {found.forms_completed} / {found.forms_started} | "
            f"{found.ae_cases} / {found.ae_reports} | {found.wa_replies} ({found.wa_sent_twice}, "
            f"{found.wa_unsent}) | {cpu} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["1x1", "2x1", "2x2", "3x2"])
    parser.add_argument("--kill", nargs="*", default=["3x2"], help="configurations to run again with SIGKILLs")
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--lease", type=float, default=10.0, help="CONCIERGE_CONVERSATION_LEASE_S (s)")
    parser.add_argument("--pg", default=os.environ.get("CONCIERGE_CI_POSTGRES_URL",
                                                       "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    runs: list[Run] = []
    twilio = FakeTwilioServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
            plan = [(c, False) for c in args.configs] + [(c, True) for c in args.kill]
            for config, kill in plan:
                runs.append(one(args.pg, args.redis, config, args, Path(tmp), kill, twilio))
    finally:
        twilio.stop()
    load = os.getloadavg()
    print(f"\nscale-out: {args.conversations} conversations × {args.messages} messages (half web chat, half "
          f"WhatsApp; samples forms, adverse events), {args.concurrency} at a time, each message to a random api "
          f"process; PostgreSQL + Redis; lease {args.lease:g} s; load average {load[0]:.1f}")
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    bad = 0
    for r in runs:
        print(row(r))
        # A turn the killed api process had sent to Rasa but not committed is asked of Rasa again by
        # the process that takes over (its replies are stored once): allowed only in a kill run.
        bad += r.found.bad + (0 if r.load.killed else r.found.turns_twice)
    for r in runs:
        if r.found.summaries_corrected:
            print(f"{r.label}: {len(r.found.summaries_corrected)} form summaries showed another value than the HCP "
                  f"gave and were corrected before confirming, e.g. {r.found.summaries_corrected[0]}")
        if r.found.problems:
            print(f"{r.label}: " + "\n  ".join(r.found.problems[:5]))
    for r in runs:
        if r.load.killed:
            f = r.found
            recovered = "n/a" if f.recovered_s is None else f"{f.recovered_s:.1f} s"
            print(f"{r.label}: SIGKILLed {', '.join(r.load.killed)}; forms in progress at the kill "
                  f"{r.load.forms_in_progress_at_kill}; everything stored before the kill processed "
                  f"{recovered} after it (lease {args.lease:g} s); turns run again {f.turns_rerun}; "
                  f"messages whose replies came after the client's wait {f.unanswered}. Rasa turns twice there "
                  "are turns the killed api process had in flight, asked again by the process that took its "
                  "conversations over")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
