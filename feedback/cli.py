"""``concierge feedback themes [--since --until]``: compute, store and print the feedback themes."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from api.cli import int_at_least, open_sessions
from api.clock import SystemClock
from api.db import make_engine, make_session_factory, unit_of_work
from api.settings import Settings
from feedback.clustering import DEFAULT_METHOD, METHODS


def _when(value: str) -> datetime:
    """An ISO date or datetime; naive values are UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or datetime: {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def register(sub: Any) -> None:
    parser = sub.add_parser("feedback", help="feedback analytics")
    fsub = parser.add_subparsers(dest="feedback_command", required=True)
    p = fsub.add_parser("themes", help="group comments and not-helpful votes into themes; store and print them")
    p.add_argument("--since", type=_when, default=None, help="ISO date/datetime (default: 30 days before --until)")
    p.add_argument("--until", type=_when, default=None, help="ISO date/datetime, exclusive (default: now)")
    p.add_argument("--method", choices=sorted(METHODS), default=DEFAULT_METHOD)
    p.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm",
                   help="hashing: the fast deterministic test embedder (no model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_themes)
    p = fsub.add_parser("rollup", help="refresh the CX dashboard's daily rollups (dirty, recent and missing days)")
    p.add_argument("--lookback-days", type=int_at_least(0), default=2,
                   help="always recompute this many days before today (default 2)")
    p.add_argument("--backfill-days", type=int_at_least(0), default=400,
                   help="roll up missing days back to this many days before today (default 400)")
    p.add_argument("--max-days", type=int_at_least(0), default=None, help="recompute at most this many days")
    p.add_argument("--rebuild", action="store_true",
                   help="recompute every day of the backfill range and every conversation's products")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_rollup)


def cmd_rollup(args: argparse.Namespace) -> int:
    from feedback import rollups

    engine = make_engine(Settings().database_url)
    try:
        factory = make_session_factory(engine)
        report = rollups.refresh(factory, now=SystemClock().now(), lookback_days=args.lookback_days,
                                 backfill_days=args.backfill_days, rebuild=args.rebuild, max_days=args.max_days)
        with factory() as session:
            sizes = rollups.refresh_counts(session)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"days": [d.isoformat() for d in report.days], "rows": report.rows, "pairs": report.pairs,
                          "empty_days": report.empty, "skipped": [d.isoformat() for d in report.skipped],
                          "ms": report.ms, "tables": sizes}, indent=2))
        return 0
    span = f" ({min(report.days)} .. {max(report.days)})" if report.days else ""
    print(f"rolled up {len(report.days)} days{span} into {report.rows} rows, {report.empty} days without activity, "
          f"{report.pairs} new conversation products, in {report.ms / 1000:.1f} s")
    if report.skipped:
        print(f"skipped (another refresh holds them): {', '.join(d.isoformat() for d in report.skipped)}")
    print("tables: " + ", ".join(f"{t} {n}" for t, n in sizes.items()))
    return 0


def cmd_themes(args: argparse.Namespace) -> int:
    from feedback.themes import latest_themes, run_themes
    from knowledge.embedding import Embedder, HashingEmbedder, SentenceTransformerEmbedder

    now = SystemClock().now()
    until = args.until or now
    since = args.since or until - timedelta(days=30)
    if since >= until:
        print("error: --since must be before --until", file=sys.stderr)
        return 2
    embedder: Embedder = HashingEmbedder() if args.embedder == "hashing" else SentenceTransformerEmbedder()
    factory = open_sessions(Settings())
    with unit_of_work(factory) as session:
        run, result = run_themes(session, since=since, until=until, embedder=embedder, now=now, method=args.method)
        views = latest_themes(session, since=since, until=until)
    if args.json:
        print(json.dumps({"run": run.id, "since": since.isoformat(), "until": until.isoformat(),
                          "comments": result.comments, "ratings": result.ratings, "method": run.method,
                          "themes": [{"key": v.key, "label": v.label, "terms": v.terms, "count": v.count,
                                      "sentiment": v.sentiment, "first_class": v.first_class,
                                      "trend": [[d.isoformat(), n] for d, n in v.trend],
                                      "examples": v.examples} for v in views]}, indent=2))
        return 0
    print(f"run {run.id}: {result.comments} comments, {result.ratings} not-helpful votes, "
          f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC, {run.method}, {run.duration_ms / 1000:.1f} s")
    for v in views:
        mark = "*" if v.first_class else " "
        sentiment = "  n/a" if v.sentiment is None else f"{v.sentiment:+.2f}"
        print(f"{mark} {v.count:>6}  {sentiment}  {v.label}")
        if v.terms:
            print(f"          terms: {', '.join(v.terms)}")
        for quote in v.examples:
            print(f"          \"{quote}\"")
    if not views:
        print("no feedback in the window")
    return 0
