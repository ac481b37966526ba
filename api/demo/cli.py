"""``concierge demo seed``: fictional HCPs with conversations and feedback for the CX dashboard."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

from api.cli import int_at_least
from api.settings import Settings


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("dates look like 2026-11-23") from None


def seed_database(settings: Settings, *, hcps: int, days: int, seed: int, end: date | None = None,
                  only_if_empty: bool = False, quiet: bool = False, themes: str | None = None) -> int:
    """Seed the configured database; with ``only_if_empty`` do nothing when it has HCPs already.

    ``themes`` ("minilm" or "hashing") then runs the feedback-theme job over the seeded days, so
    the dashboard's themes panel has something to show.
    """
    from api.clock import SystemClock
    from api.db import make_engine, make_session_factory, unit_of_work
    from api.demo import seed as demo

    engine = make_engine(settings.database_url)
    started = time.perf_counter()
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            if only_if_empty and demo.has_hcps(session):
                return 0
            report = demo.seed(session, demo.SeedSpec(hcps=hcps, days=days, seed=seed, end=end),
                               now=SystemClock().now())
        # roll the seeded days up for the CX dashboard (it reads them live until then)
        from feedback import rollups

        rollups.refresh(make_session_factory(engine), now=SystemClock().now(),
                        backfill_days=(SystemClock().now().date() - report.first_day).days + 1)
    except demo.AlreadySeeded as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except demo.NoContent as exc:
        print(f"{exc} (concierge knowledge load, or make run)", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if not quiet:
        counts = ", ".join(f"{n} {t}" for t, n in report.counts.items())
        print(f"demo data (seed {report.seed}, {report.first_day} .. {report.last_day}): {counts} "
              f"in {time.perf_counter() - started:.1f} s")
    if themes:
        return _run_themes(settings, report.first_day, report.last_day, themes, quiet=quiet)
    return 0


def _run_themes(settings: Settings, first: date, last: date, embedder_name: str, *, quiet: bool) -> int:
    from datetime import UTC, datetime, timedelta

    from api.clock import SystemClock
    from api.db import make_engine, make_session_factory, unit_of_work
    from feedback.themes import run_themes
    from knowledge.embedding import Embedder, HashingEmbedder, SentenceTransformerEmbedder

    if not quiet:
        print("computing feedback themes over the demo comments (once)...", flush=True)
    try:
        embedder: Embedder = HashingEmbedder() if embedder_name == "hashing" else SentenceTransformerEmbedder()
        engine = make_engine(settings.database_url)
        try:
            with unit_of_work(make_session_factory(engine)) as session:
                since = datetime.combine(first, datetime.min.time(), UTC)
                run, result = run_themes(session, since=since, until=since + timedelta(days=(last - first).days + 1),
                                         embedder=embedder, now=SystemClock().now())
        finally:
            engine.dispose()
    except Exception as exc:  # the demo data stands without themes; say why there are none
        print(f"feedback themes not computed: {exc}", file=sys.stderr)
        return 1
    if not quiet:
        print(f"feedback themes: {result.comments} comments, {result.ratings} not-helpful votes "
              f"({run.duration_ms / 1000:.1f} s)")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    return seed_database(Settings(), hcps=args.hcps, days=args.days, seed=args.seed, end=args.until,
                         themes=None if args.no_themes else args.embedder)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo_command", required=True)
    p = demo.add_parser("seed", help="fictional HCPs, conversations and feedback for the CX dashboard")
    p.add_argument("--hcps", type=int_at_least(1), default=500, help="how many HCPs (default 500)")
    p.add_argument("--days", type=int_at_least(1), default=90, help="days of activity ending today (default 90)")
    p.add_argument("--seed", type=int, default=1, help="random seed; a used seed is refused (default 1)")
    p.add_argument("--until", type=_date, default=None, help="last day (default today, UTC)")
    p.add_argument("--no-themes", action="store_true", help="do not run the feedback-theme job afterwards")
    p.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm",
                   help="embedder of the theme job (hashing: fast, no model)")
    p.set_defaults(func=cmd_seed)
