"""CX dashboard queries at scale: 1M messages / 100k+ feedback rows in a scratch PostgreSQL database.

    .venv/bin/python benchmarks/analytics.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
        [--messages 1000000] [--runs 10] [--raw-runs 3] [--reuse] [--keep]

Creates the database ``concierge_bench_analytics`` on that server (dropped first unless
``--reuse``; dropped at the end unless ``--keep``), migrates it, loads the demo library, and fills
it with the demo generator (``api.demo.seed``, the same rows ``concierge demo seed`` writes)
scaled up (more HCPs, more active), COPYing the rows in, with each conversation padded with
short follow-up turns ("thanks" / "you're welcome") until the message count is reached
(``--reuse`` keeps an existing filled database: fill once, measure many times). Then every
dashboard panel (``feedback.kpis.PANELS``) is timed for four filters (90 days; 30 days; 30 days
on WhatsApp; 30 days for one product): p50 / p95 in ms, target p95 ≤ 300 ms.

Twice: first purely from the raw tables (``use_rollups=False``, ``--raw-runs`` times; 0 skips
it), then from the daily rollups (``feedback.rollups``, ``--runs`` times), refreshed as the app
would with "today" = the last day of the data: every earlier day is rolled up, the last day
(today, partial in real life) is computed live. The refresh is timed too: the first one (all
90 days) and an incremental one (the two days before today, plus dirty days).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlalchemy import Engine, create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from api.db import make_engine, make_session_factory  # noqa: E402
from api.demo.seed import TABLES, Generator, SeedSpec, _fill_subjects, load_items  # noqa: E402
from api.migrate import upgrade  # noqa: E402
from api.settings import Settings  # noqa: E402
from feedback import kpis, rollups  # noqa: E402
from knowledge.service import load_library  # noqa: E402

DB_NAME = "concierge_bench_analytics"
END = date(2026, 11, 22)
FILLER = (("in", "hcp", "Thanks"), ("out", "bot", "You're welcome. Anything else?"), ("in", "hcp", "No, that's all"),
          ("out", "bot", "Thank you for using HCP Concierge."))
MIGRATION_0014 = REPO / "api" / "migrations" / "versions" / "0014_cx_analytics.py"


def _admin(url: str) -> Engine:
    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def fresh_database(url: str, reuse: bool) -> tuple[str, bool]:
    target = make_url(url).set(database=DB_NAME).render_as_string(hide_password=False)
    admin = _admin(url)
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": DB_NAME}).first()
        if exists and not reuse:
            conn.execute(text(f'DROP DATABASE "{DB_NAME}" WITH (FORCE)'))
            exists = None
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    admin.dispose()
    return target, bool(exists)


def drop_database(url: str) -> None:
    admin = _admin(url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
    admin.dispose()


def _copy(raw: Any, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
        for r in rows:
            cp.write_row([json.dumps(v) if isinstance(v, (dict, list)) else v for v in (r[c] for c in cols)])


def fill(engine: Engine, messages: int) -> dict[str, int]:
    """Generate demo rows at scale and COPY them in; returns the row counts."""
    with Session(engine) as session:
        load_library(session, Settings().library_path, actor="benchmark")
        session.commit()
        items = load_items(session)
    # ~3.9 generated messages per conversation, padded to ~8: conversations ≈ messages / 8;
    # about 4.2 conversations per HCP at activity 1 over 90 days.
    conversations = messages / 8
    activity = 2.0
    hcps = int(conversations / (4.2 * activity)) + 1
    spec = SeedSpec(hcps=hcps, days=90, seed=20261122, end=END, activity=activity)
    gen = Generator(spec, items, today=END)
    counts = {t: 0 for t in TABLES}
    pad_per_conv = 4
    raw = engine.raw_connection()
    started = time.perf_counter()
    try:
        driver = raw.driver_connection
        assert driver is not None
        for rows in gen.chunks():
            _fill_subjects(rows)
            extra = []
            for c in rows["conversation"]:
                at = c["last_inbound_at"]
                for i, (direction, sender, body) in enumerate(FILLER[:pad_per_conv]):
                    when = at + timedelta(seconds=30 + 5 * i)
                    extra.append({**rows["message"][0], "conversation_id": c["id"], "direction": direction,
                                  "sender_type": sender, "channel": c["channel"], "body": body,
                                  "content_id": None, "content_version": None, "approval_code": None,
                                  "created_at": when, "processed_at": when})
            rows["message"].extend(extra)
            for table in TABLES:
                _copy(driver, table, rows[table])
                counts[table] += len(rows[table])
            driver.commit()
            done = counts["message"]
            print(f"  {done:>9,} messages, {counts['conversation']:,} conversations "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
            if done >= messages:
                break
    finally:
        raw.close()
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return counts


def load_0014() -> Any:
    spec = importlib.util.spec_from_file_location("migration_0014", MIGRATION_0014)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_indexes(engine: Engine, present: bool) -> None:
    """Drop or create migration 0014's indexes (the migration's own DDL)."""
    module = load_0014()
    with engine.begin() as conn:
        for name, _table, *_ in module.INDEXES:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
        if present:
            for stmt in module.index_ddl("postgresql"):
                conn.execute(text(stmt))
        conn.execute(text("ANALYZE"))


def time_panels(engine: Engine, runs: int, use_rollups: bool) -> list[tuple[str, str, float, float]]:
    until = datetime.combine(END + timedelta(days=1), datetime.min.time(), UTC)
    with Session(engine) as session:
        product = kpis.products(session)[0]
    filters = {
        "90 d": kpis.KpiFilter(until - timedelta(days=90), until),
        "30 d": kpis.KpiFilter(until - timedelta(days=30), until),
        "30 d whatsapp": kpis.KpiFilter(until - timedelta(days=30), until, channel="whatsapp"),
        f"30 d {product}": kpis.KpiFilter(until - timedelta(days=30), until, product=product),
    }
    redact: Callable[[str], str] | None
    try:
        from feedback.redact import redact
    except ImportError:
        redact = None
    out = []
    for fname, f in filters.items():
        for panel, fn in kpis.PANELS.items():
            samples = []
            for _ in range(runs):
                with Session(engine) as session:
                    start = time.perf_counter()
                    if panel == "themes":
                        fn(session, f, redact=redact)  # type: ignore[call-arg]
                    elif panel == "unanswered":
                        fn(session, f, redact=redact, use_rollups=use_rollups)  # type: ignore[call-arg]
                    else:
                        fn(session, f, use_rollups=use_rollups)  # type: ignore[call-arg]
                    samples.append((time.perf_counter() - start) * 1000)
            samples.sort()
            p50 = statistics.median(samples)
            p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
            out.append((fname, panel, p50, p95))
            print(f"  {fname:<22} {panel:<11} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("CONCIERGE_BENCH_DATABASE_URL",
                                                    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per panel and filter, from the rollups")
    ap.add_argument("--raw-runs", type=int, default=3, help="timed runs from the raw tables (0: skip)")
    ap.add_argument("--reuse", action="store_true", help="keep an existing filled database")
    ap.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = ap.parse_args()

    rollups.install()  # wired like the app: ORM flushes mark rollup days dirty
    url, existed = fresh_database(args.url, args.reuse)
    engine = make_engine(url)
    try:
        upgrade(engine)
        if not existed:
            started = time.perf_counter()
            counts = fill(engine, args.messages)
            print(f"filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        # COPY bypasses the ORM's flush hook: record every (conversation, product) pair as
        # `concierge demo seed` does (idempotent, so a reused database is completed too)
        with Session(engine) as session:
            pairs = rollups.sync_conversation_products(session, None)
            session.commit()
        print(f"conversation products recorded: {pairs:,} new", file=sys.stderr)
        with Session(engine) as session:
            counts = {t: int(session.execute(select(func.count()).select_from(text(t))).scalar_one())
                      for t in TABLES}
        feedback_rows = counts["answer_rating"] + counts["survey_response"] + counts["feedback_comment"]
        print(f"rows: {counts}; feedback rows {feedback_rows:,}", file=sys.stderr)
        set_indexes(engine, present=True)
        factory = make_session_factory(engine)
        today = datetime.combine(END, datetime.min.time(), UTC) + timedelta(hours=12)
        with factory.begin() as session:
            for t in (rollups.cx_daily, rollups.cx_rollup_day, rollups.cx_rollup_dirty):
                session.execute(t.delete())
        before: list[tuple[str, str, float, float]] = []
        if args.raw_runs > 0:
            print("from the raw tables:", file=sys.stderr)
            before = time_panels(engine, args.raw_runs, use_rollups=False)
        first = rollups.refresh(factory, now=today, backfill_days=90)
        print(f"first refresh: {len(first.days)} days, {first.rows} rows, {first.ms / 1000:.1f} s", file=sys.stderr)
        with factory.begin() as session:      # a late row for last week: its day is recomputed next time
            rollups.mark_dirty(session, [END - timedelta(days=7)])
        again = rollups.refresh(factory, now=today, backfill_days=90)
        print(f"incremental refresh: {len(again.days)} days, {again.ms / 1000:.1f} s", file=sys.stderr)
        with Session(engine) as session:
            sizes = rollups.refresh_counts(session)
        print("from the rollups:", file=sys.stderr)
        after = time_panels(engine, args.runs, use_rollups=True)
    finally:
        engine.dispose()
        if not args.keep:
            drop_database(args.url)

    print(f"\nload average at the end (1/5/15 min): {' / '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")
    print(f"\n{counts['message']:,} messages, {counts['conversation']:,} conversations, {counts['answer']:,} "
          f"answers, {feedback_rows:,} feedback rows ({counts['answer_rating']:,} ratings, "
          f"{counts['survey_response']:,} surveys, {counts['feedback_comment']:,} comments), "
          f"{counts['handoff']:,} handoffs, {counts['service_request']:,} service requests; {args.runs} runs each\n")
    print(f"rollups: first refresh {len(first.days)} days in {first.ms / 1000:.1f} s, incremental "
          f"{len(again.days)} days ({', '.join(d.isoformat() for d in again.days)}) in {again.ms / 1000:.1f} s; "
          f"tables {sizes}\n")
    print(f"| filter | panel | p50 raw | p95 raw ({args.raw_runs} runs) | p50 rollups | p95 rollups "
          f"({args.runs} runs) | p95 ≤ 300 ms |")
    print("|---|---|---|---|---|---|---|")
    raw = {(fname, panel): (b50, b95) for fname, panel, b50, b95 in before}
    for fname, panel, a50, a95 in after:
        b50, b95 = raw.get((fname, panel), (float("nan"), float("nan")))
        print(f"| {fname} | {panel} | {b50:.1f} | {b95:.1f} | {a50:.1f} | {a95:.1f} | "
              f"{'yes' if a95 <= 300 else '**no**'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
