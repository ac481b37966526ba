"""``concierge hcp export|erase ID`` (GDPR) and ``concierge export crm --since …`` (CRM feed).

``export crm`` writes JSON lines (docs/crm-export.md) for the window ``[--since, --until)``.

``hcp export`` writes everything held about one HCP as JSON (stdout, or ``--out FILE``).
``hcp erase`` removes or pseudonymises it (``api.hcps.gdpr``); it asks for ``--yes`` because it
cannot be undone. Both are audited with the operator (``--actor``, default the OS user).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from api.audit import service as audit
from api.clock import SystemClock
from api.db import make_engine, make_session_factory, unit_of_work
from api.errors import ConciergeError
from api.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hcp = sub.add_parser("hcp", help="GDPR: export or erase one HCP's personal data")
    hsub = hcp.add_subparsers(dest="hcp_command", required=True)
    exp = hsub.add_parser("export", help="everything held about one HCP, as JSON")
    exp.add_argument("hcp_id")
    exp.add_argument("--out", type=Path, help="write here instead of stdout")
    exp.add_argument("--actor", help="who asked (audited); default the OS user")
    exp.set_defaults(func=_export)
    era = hsub.add_parser("erase", help="remove or pseudonymise one HCP's personal data (irreversible; "
                                        "adverse events are retained under legal hold, pseudonymised)")
    era.add_argument("hcp_id")
    era.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    era.add_argument("--actor", help="who asked (audited); default the OS user")
    era.set_defaults(func=_erase)
    export = sub.add_parser("export", help="exports for other systems")
    esub = export.add_subparsers(dest="export_command", required=True)
    crm = esub.add_parser("crm", help="JSONL of HCP interactions, preferences and consent for a CRM "
                                      "(schema: docs/crm-export.md)")
    crm.add_argument("--since", required=True, type=_when, help="ISO date or date-time (UTC unless it says)")
    crm.add_argument("--until", type=_when, help="ISO date or date-time, exclusive (default: now)")
    crm.add_argument("--out", type=Path, help="write here instead of stdout")
    crm.set_defaults(func=_export_crm)


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _actor(args: argparse.Namespace) -> str:
    return str(args.actor or f"cli:{getpass.getuser()}")[:64]


@contextmanager
def output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a file written in full or not at all (temporary file renamed into place)."""
    if path is None:
        yield sys.stdout
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _export(args: argparse.Namespace) -> int:
    from api.hcps import gdpr

    factory = make_session_factory(make_engine(Settings().database_url))
    try:
        with unit_of_work(factory) as session:
            data = gdpr.export(session, args.hcp_id, now=SystemClock().now(), actor=_actor(args))
        with output(args.out) as fh:
            json.dump(data, fh, ensure_ascii=False, indent=2, sort_keys=True, default=str)
            fh.write("\n")
    except ConciergeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _export_crm(args: argparse.Namespace) -> int:
    from api.hcps import crm

    factory = make_session_factory(make_engine(Settings().database_url))
    try:
        window = crm.Window(args.since, args.until or SystemClock().now())
        with unit_of_work(factory) as session:
            rows = crm.records(session, window)
            audit.record(session, action="crm.exported", subject_type="export", subject_id=None,
                         actor_type="system", actor_id=f"cli:{getpass.getuser()}"[:64],
                         data={"since": window.since.isoformat(), "until": window.until.isoformat(),
                               "records": len(rows)}, at=SystemClock().now())
        with output(args.out) as fh:
            for row in rows:
                fh.write(crm.dumps(row) + "\n")
    except ConciergeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _erase(args: argparse.Namespace) -> int:
    from api.hcps import gdpr

    if not args.yes:
        print("error: erasure cannot be undone; run again with --yes to confirm", file=sys.stderr)
        return 2
    settings = Settings()
    factory = make_session_factory(make_engine(settings.database_url))
    try:
        with unit_of_work(factory) as session:
            report = gdpr.erase(session, args.hcp_id, now=SystemClock().now(), actor=_actor(args))
    except ConciergeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    # Replicas share one tracker store: emptying a tracker through any of them is enough.
    cleared: list[str] = []
    pending = list(report.conversation_ids)
    for url in settings.rasa_replica_urls:
        rasa = gdpr.forget_in_rasa(url, settings.rasa_token, pending, timeout=settings.rasa_timeout)
        cleared += rasa.cleared
        pending = list(rasa.failed)
        if not pending:
            break
    print(json.dumps({"hcp_id": report.hcp_id, "changed": report.changed,
                      "retained_legal_hold": report.retained_legal_hold,
                      "rasa_trackers_emptied": len(cleared)}, sort_keys=True))
    if rasa.failed:
        print(f"warning: Rasa at {', '.join(settings.rasa_replica_urls)} did not empty {len(rasa.failed)} "
              f"tracker(s) "
              f"({', '.join(sorted(set(rasa.failed.values())))}); its tracker store still holds those "
              "conversations until it is restarted or the erase is run again", file=sys.stderr)
    return 0
