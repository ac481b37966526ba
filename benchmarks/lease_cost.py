"""What a conversation lease costs per turn on PostgreSQL (api/pipeline/lease.py).

Two measurements on a throw-away database of the server given:

1. the lease statements alone, as a one-message drain issues them: acquire (one transaction), the fence
   in each of the turn's two step transactions (one UPDATE each, measured inside a transaction), and
   release-then-check (one transaction, two statements) — wall time per turn;
2. whole web chat turns through the app (fake Rasa answering at once, no safety model), one after the
   other, with leases (the PostgreSQL default) and with them switched off on the same database, in
   alternating blocks: wall time per POST and this process's CPU per turn (the app runs in-process).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/lease_cost.py \\
        --server postgresql+psycopg://postgres@127.0.0.1:5432/postgres [--turns 300] [--loops 1000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.app import create_app
from api.db import make_engine
from api.migrate import upgrade
from api.pipeline.lease import LeaseStore
from api.pipeline.turn import null_safety_hook
from api.scratch_db import create_database, drop_database
from api.settings import Settings
from tests.fakes.rasa import FakeRasa


def statements_only(engine: object, loops: int) -> dict[str, list[float]]:
    """Wall ms of each lease operation of a one-message drain: the acquire and the release/check are
    transactions of their own; a fence is one more statement in a step transaction that commits anyway."""
    store = LeaseStore(engine, lease_s=30.0)  # type: ignore[arg-type]
    cid = uuid.uuid4().hex
    took: dict[str, list[float]] = {"acquire": [], "fence": [], "release_and_check": []}
    for _ in range(loops):
        started = time.perf_counter()
        store.acquire(cid)
        took["acquire"].append((time.perf_counter() - started) * 1000)
        with Session(engine) as s:  # type: ignore[call-overload]
            s.execute(text("SELECT 1"))  # the step's transaction is open already
            started = time.perf_counter()
            store.fence(s, cid)
            took["fence"].append((time.perf_counter() - started) * 1000)
            s.commit()
        started = time.perf_counter()
        store.release_and_check(cid)
        took["release_and_check"].append((time.perf_counter() - started) * 1000)
    store.close()
    return took


def turns(client: TestClient, count: int) -> tuple[list[float], float]:
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    walls: list[float] = []
    cpu0 = time.process_time()
    for i in range(count):
        started = time.perf_counter()
        res = client.post("/api/webchat/messages", json={"text": f"benchmark turn {i}"},
                          headers={"X-Chat-Session": sid})
        assert res.status_code == 200, res.text
        if res.json()["pending"]:  # the turn outlasted the request's wait (a busy machine): not timed
            print(f"turn {i} answered pending (still running at the deadline); left out")
            continue
        walls.append((time.perf_counter() - started) * 1000)
    return walls, (time.process_time() - cpu0) * 1000 / count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True, help="SQLAlchemy URL of a PostgreSQL server (any database)")
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--loops", type=int, default=1000)
    ap.add_argument("--blocks", type=int, default=6)
    args = ap.parse_args()
    url = create_database(args.server, "concierge_lease_bench")
    engine = make_engine(url)
    try:
        upgrade(engine)
        ops = statements_only(engine, args.loops)
        for name, ms in ops.items():
            print(f"{name:18} p50 {statistics.median(ms):.2f} ms  mean {statistics.fmean(ms):.2f} ms  ({args.loops})")
        per_turn = [a + 2 * f + r for a, f, r in zip(ops["acquire"], ops["fence"], ops["release_and_check"],
                                                     strict=True)]
        print(f"per one-message drain (acquire + 2 fences + release/check): p50 {statistics.median(per_turn):.2f} ms")
        with tempfile.TemporaryDirectory() as var:
            settings = Settings(database_url=url, var_dir=Path(var), rasa_url="http://rasa", rasa_timeout=8.0,
                                rate_limits=False, inbox_sweep_interval_s=0, sla_sweep_interval_s=0,
                                cx_rollup_interval_s=0, audit_checkpoint_interval_s=0, audit_key="bench")
            app = create_app(settings, engine=engine, safety_hook=null_safety_hook,
                             rasa_transport=FakeRasa().transport(), warm_knowledge=False)
            with TestClient(app) as client:
                worker = app.state.concierge.worker
                leases, fence = worker.leases, worker.processor.fence
                assert leases is not None, "leases are on for PostgreSQL"
                turns(client, 20)  # warm up
                results: dict[str, tuple[list[float], list[float]]] = {"leases": ([], []), "no leases": ([], [])}
                per_block = max(1, args.turns // args.blocks)
                for block in range(args.blocks * 2):
                    mode = "leases" if block % 2 == 0 else "no leases"
                    worker.leases, worker.processor.fence = (leases, fence) if mode == "leases" else (None, None)
                    walls, cpu = turns(client, per_block)
                    results[mode][0].extend(walls)
                    results[mode][1].append(cpu)
                worker.leases, worker.processor.fence = leases, fence
        for mode, (walls, cpus) in results.items():
            walls.sort()
            p95 = walls[int(len(walls) * 0.95)]
            print(f"{mode:9}: {len(walls)} turns, wall p50 {statistics.median(walls):.1f} ms, "
                  f"p95 {p95:.1f} ms, CPU (this process) {statistics.median(cpus):.1f} ms/turn")
        on, off = results["leases"], results["no leases"]
        print(f"difference: wall p50 {statistics.median(on[0]) - statistics.median(off[0]):+.1f} ms, "
              f"CPU {statistics.median(on[1]) - statistics.median(off[1]):+.1f} ms/turn")
    finally:
        engine.dispose()
        drop_database(url)


if __name__ == "__main__":
    main()
