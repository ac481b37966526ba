"""``concierge knowledge validate | load | answer | replay | gaps``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from api.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("knowledge", help="the approved-content library")
    sub = parser.add_subparsers(dest="knowledge_command", required=True)

    p = sub.add_parser("validate", help="validate a library; exit 1 with errors when invalid")
    p.add_argument("--library", type=Path, required=True)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("load", help="validate, load into the database and build the index")
    p.add_argument("--library", type=Path, required=True)
    p.add_argument("--actor", default="cli")
    p.add_argument("--index-dir", type=Path, default=None)
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("answer", help="batch-answer queries from a library file, no database needed")
    p.add_argument("--library", type=Path, required=True)
    p.add_argument("--queries", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--index-dir", type=Path, default=None)
    p.add_argument("--today", type=date.fromisoformat, default=None, help="gate date (default: today)")
    p.set_defaults(func=cmd_answer)

    p = sub.add_parser("replay", help="replay recent questions against a new library file before loading it")
    p.add_argument("--library", type=Path, required=True)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--index-dir", type=Path, default=None)
    p.add_argument("--today", type=date.fromisoformat, default=None, help="gate date (default: today)")
    p.add_argument("--max-questions", type=int, default=None,
                   help="replay only this many of the most recent questions (default: all of them)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("gaps", help="content-gap report: clusters of escalated / not-helpful questions")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--min-count", type=int, default=1)
    p.set_defaults(func=cmd_gaps)


def cmd_validate(args: argparse.Namespace) -> int:
    from knowledge.library import LibraryInvalid, parse_library

    try:
        library = parse_library(args.library)
    except LibraryInvalid as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        print(f"invalid: {len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    print(f"valid: {len(library.items)} items, {len(library.products)} products")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from api.db import make_engine, make_session_factory, unit_of_work
    from api.migrate import upgrade
    from knowledge.library import LibraryInvalid
    from knowledge.service import get_knowledge_base, load_library

    settings = Settings()
    if settings.is_sqlite:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        with unit_of_work(make_session_factory(engine)) as session:
            report = load_library(session, args.library, actor=args.actor)
        print(f"loaded {report.items} items: {len(report.added)} new, {len(report.new_versions)} new versions, "
              f"{report.unchanged} unchanged, {len(report.skipped_stale)} stale skipped, "
              f"{report.products} products")
        kb = get_knowledge_base(args.index_dir or settings.resolved_index_dir)
        with make_session_factory(engine)() as session:
            kb.warm_up(session)
        print(f"index ready under {kb.index_dir} ({kb.last_embedded} passages embedded)")
    except LibraryInvalid as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _read_queries(path: Path) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        q = json.loads(line)
        if not isinstance(q, dict) or not isinstance(q.get("id"), str) or not isinstance(q.get("text"), str):
            raise ValueError(f"{path}:{n}: each line needs string fields 'id' and 'text'")
        out.append(q)
    return out


def cmd_answer(args: argparse.Namespace) -> int:
    from knowledge.engine import LibraryKnowledgeBase, get_knowledge_base
    from knowledge.gate import Recipient
    from knowledge.library import LibraryInvalid, parse_library

    settings = Settings()
    try:
        library = parse_library(args.library)
        queries = _read_queries(args.queries)
    except LibraryInvalid as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    today = args.today or date.today()
    lkb = LibraryKnowledgeBase(library, get_knowledge_base(args.index_dir or settings.resolved_index_dir))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    answered = 0
    with args.out.open("w", encoding="utf-8") as fh:
        for q in queries:
            recipient = Recipient(market=(q.get("market") or settings.default_market).upper(),
                                  audience=q.get("audience") or "hcp",
                                  verified=bool(q.get("verified", True)))
            d = lkb.decide(q["text"], recipient, today)
            top = d.candidate_ids[0][0] if (d.answer and d.candidate_ids) else None
            answered += top is not None
            fh.write(json.dumps({
                "id": q["id"], "decision": "answer" if top else "escalate", "content_id": top,
                "score": round(d.confidence, 6), "candidates": [c for c, _, _ in d.candidate_ids[:5]],
            }) + "\n")
    print(f"{len(queries)} queries: {answered} answered, {len(queries) - answered} escalated -> {args.out}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from api.clock import utcnow
    from api.db import make_engine, make_session_factory
    from knowledge.engine import LibraryKnowledgeBase, get_knowledge_base
    from knowledge.library import LibraryInvalid, parse_library
    from knowledge.replay import library_after_load, replay

    if args.days < 1:
        print("--days must be at least 1", file=sys.stderr)
        return 2
    if args.max_questions is not None and args.max_questions < 1:
        print("--max-questions must be at least 1", file=sys.stderr)
        return 2
    settings = Settings()
    try:
        library = parse_library(args.library)
    except LibraryInvalid as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 1
    engine = make_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        with factory() as session:
            after_load = library_after_load(session, library)
        lkb = LibraryKnowledgeBase(after_load, get_knowledge_base(args.index_dir or settings.resolved_index_dir))
        with factory() as session:
            now = utcnow()
            report = replay(session, lkb, since=now - timedelta(days=args.days),
                            today=args.today or date.today(), limit=args.max_questions, until=now)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print(f"replayed {report.questions} questions of the last {args.days} days against {args.library}: "
          f"{report.answered} answered (was {report.answered_before}), {report.escalated} escalated, "
          f"{len(report.changed)} changed")
    if report.capped:
        print(f"  (capped: the {report.questions} most recent of {report.asked} questions asked)")
    for c in report.changed:
        print(f"  · {c.query!r}: {c.before} -> {c.after}")
    return 0


def cmd_gaps(args: argparse.Namespace) -> int:
    from api.clock import utcnow
    from api.db import make_engine, make_session_factory
    from knowledge.gaps import gap_report

    settings = Settings()
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            clusters = gap_report(session, since=utcnow() - timedelta(days=args.days),
                                  min_count=args.min_count)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps([c.as_dict() for c in clusters], indent=2))
        return 0
    if not clusters:
        print(f"no escalated or not-helpful questions in the last {args.days} days")
        return 0
    print(f"content gaps, last {args.days} days ({len(clusters)} clusters):")
    for i, c in enumerate(clusters, start=1):
        print(f"{i:>3}. {c.label}  — {c.count} questions ({c.escalated} escalated, "
              f"{c.not_helpful} not helpful)")
        for ex in c.examples:
            print(f"       · {ex}")
    return 0
