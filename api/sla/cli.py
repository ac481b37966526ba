"""``concierge sla sweep`` (raise and deliver SLA alerts now) and ``concierge sla alerts`` (list them)."""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from api.cli import int_at_least, open_sessions
from api.clock import SystemClock
from api.settings import Settings
from api.sla import service as sla
from api.sla.models import SlaAlert


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("sla", help="SLA alerts: overdue handoffs and requests, adverse-event deadlines")
    ssub = cmd.add_subparsers(dest="sla_command", required=True)
    sweep = ssub.add_parser("sweep", help="raise alerts for what is late now and post undelivered ones")
    sweep.set_defaults(func=_sweep)
    alerts = ssub.add_parser("alerts", help="list alerts as JSON lines (newest first)")
    alerts.add_argument("--undelivered", action="store_true", help="only alerts not delivered to a webhook")
    alerts.add_argument("--limit", type=int_at_least(1), default=100)
    alerts.set_defaults(func=_alerts)


def _sweep(args: argparse.Namespace) -> int:
    settings = Settings()
    factory = open_sessions(settings)
    report = sla.sweep_configured(factory, settings, SystemClock().now())
    print(f"{report.raised} alerts raised, {report.delivered} delivered, {report.failed} failed"
          + ("" if settings.sla_alert_webhooks else " (no CONCIERGE_SLA_ALERT_WEBHOOKS: recorded only)"))
    return 1 if report.failed else 0


def _alerts(args: argparse.Namespace) -> int:
    factory = open_sessions(Settings())
    stmt = select(SlaAlert).order_by(SlaAlert.id.desc()).limit(args.limit)
    if args.undelivered:
        stmt = stmt.where(SlaAlert.delivered_at.is_(None))
    with factory() as s:
        for a in s.execute(stmt).scalars():
            print(json.dumps({"id": a.id, "kind": a.kind, "subject_type": a.subject_type, "subject_id": a.subject_id,
                              "reference": a.reference, "team": a.team, "due_at": a.due_at.isoformat(),
                              "raised_at": a.created_at.isoformat(),
                              "delivered_at": a.delivered_at.isoformat() if a.delivered_at else None,
                              "attempts": a.attempts, "last_error": a.last_error}))
    return 0
