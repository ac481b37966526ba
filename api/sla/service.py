"""Raise SLA alerts and deliver them to a webhook (Slack / Teams style incoming webhook).

The consoles show SLA badges, but a badge pages nobody. ``raise_alerts`` finds what is late —
a handoff nobody has claimed by its SLA time, a service request neither resolved nor closed by
its SLA, an adverse-event case not yet submitted or closed within ``warning`` of its reporting
deadline (``due_soon``) or past it (``overdue``) — and records one ``sla_alert`` row and one
audit event per breach, once (a unique key on subject, kind and due time; a transferred handoff
with a new due time can breach again). ``deliver`` posts each undelivered alert to its team's
webhook (``CONCIERGE_SLA_ALERT_WEBHOOKS``: team → URL, ``*`` for the rest; safety alerts go only
where safety's URL or ``*`` points) under a short lease (two api processes never post the same
alert), retrying failed posts on later sweeps up to ``MAX_ATTEMPTS``. An alert whose team has no
webhook stays in the table, audited, for ``concierge sla alerts``.

An alert carries metadata only — reference, what is late, which team, due time, a console link —
never a message, summary, request detail or case narrative.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.audit import service as audit
from api.db import unit_of_work
from api.handoffs.models import Handoff, HandoffStatus
from api.requests.models import RequestStatus, ServiceRequest
from api.safety.models import AdverseEvent, AeStatus
from api.settings import Settings
from api.sla.models import AlertKind, SlaAlert

log = logging.getLogger("concierge.sla")

MAX_ATTEMPTS = 10
LEASE = timedelta(seconds=60)
CONSOLE_PATHS = {"handoff": "/console/inbox/{id}", "service_request": "/console/requests/{id}",
                 "adverse_event": "/console/safety/{id}", "ae_screen": "/console/safety-review"}
WHAT = {"handoff": "handoff not claimed", "service_request": "service request not completed",
        "adverse_event": "adverse-event case not submitted",
        "ae_screen": "safety screen live recall (lower 95 % bound) below its floor:"}


@dataclass(frozen=True)
class Breach:
    subject_type: str
    subject_id: str
    reference: str
    kind: str
    team: str
    due_at: datetime


@dataclass
class SweepReport:
    raised: int = 0
    delivered: int = 0
    failed: int = 0


def _not_alerted(subject_type: str, kind: str, subject_id: Any, due: Any) -> Any:
    """No ``sla_alert`` yet for this breach: a backlog of old late rows is not re-read every sweep."""
    return ~exists().where(SlaAlert.subject_type == subject_type, SlaAlert.subject_id == subject_id,
                           SlaAlert.kind == kind, SlaAlert.due_at == due)


def find_breaches(session: Session, now: datetime, warning: timedelta) -> list[Breach]:
    """What is late at ``now`` and not alerted yet."""
    out: list[Breach] = []
    overdue, soon = AlertKind.overdue, AlertKind.due_soon
    for h in session.execute(select(Handoff).where(
            Handoff.status == HandoffStatus.queued, Handoff.sla_due_at <= now,
            _not_alerted("handoff", overdue, Handoff.id, Handoff.sla_due_at))).scalars():
        out.append(Breach("handoff", h.id, h.reference, overdue, h.target, h.sla_due_at))
    open_states = (RequestStatus.open, RequestStatus.in_progress)
    for r in session.execute(select(ServiceRequest).where(
            ServiceRequest.status.in_(open_states), ServiceRequest.sla_due_at <= now,
            _not_alerted("service_request", overdue, ServiceRequest.id, ServiceRequest.sla_due_at))).scalars():
        out.append(Breach("service_request", r.id, r.reference, overdue, r.team, r.sla_due_at))
    open_cases = AdverseEvent.status.in_((AeStatus.new, AeStatus.triaged))
    for a in session.execute(select(AdverseEvent).where(
            open_cases, AdverseEvent.due_at <= now,
            _not_alerted("adverse_event", overdue, AdverseEvent.id, AdverseEvent.due_at))).scalars():
        out.append(Breach("adverse_event", a.id, a.reference, overdue, "safety", a.due_at))
    for a in session.execute(select(AdverseEvent).where(
            open_cases, AdverseEvent.due_at > now, AdverseEvent.due_at <= now + warning,
            _not_alerted("adverse_event", soon, AdverseEvent.id, AdverseEvent.due_at))).scalars():
        out.append(Breach("adverse_event", a.id, a.reference, soon, "safety", a.due_at))
    return out


def raise_alerts(session: Session, now: datetime, warning: timedelta) -> list[SlaAlert]:
    """One ``sla_alert`` + audit event for each breach not alerted before; returns the new ones."""
    new: list[SlaAlert] = []
    for b in find_breaches(session, now, warning):
        alert = SlaAlert(subject_type=b.subject_type, subject_id=b.subject_id, reference=b.reference, kind=b.kind,
                         team=b.team, due_at=b.due_at, created_at=now, attempts=0)
        try:
            with session.begin_nested():  # another api process may have raised it a moment ago
                session.add(alert)
                session.flush()
        except IntegrityError:
            continue
        audit.record(session, action="sla.alert_raised", subject_type=b.subject_type, subject_id=b.subject_id,
                     data={"alert_id": alert.id, "kind": b.kind, "reference": b.reference, "team": b.team,
                           "due_at": b.due_at.isoformat()}, at=now)
        new.append(alert)
    return new


def payload(alert: SlaAlert, now: datetime, public_url: str) -> dict[str, Any]:
    """Metadata only: never the content of a message, summary, request or case."""
    link = public_url.rstrip("/") + CONSOLE_PATHS[alert.subject_type].format(id=alert.subject_id)
    late = now - alert.due_at
    when = (f"due {alert.due_at:%Y-%m-%d %H:%M} UTC" if late < timedelta(0)
            else f"{_duration(late)} past due ({alert.due_at:%Y-%m-%d %H:%M} UTC)")
    label = {AlertKind.due_soon: "Due soon", "recall_low": "Alert"}.get(alert.kind, "Overdue")
    return {
        "text": f"{label}: {WHAT[alert.subject_type]} {alert.reference} (team {alert.team}), {when}. {link}",
        "alert": {"id": alert.id, "kind": alert.kind, "subject_type": alert.subject_type,
                  "reference": alert.reference, "team": alert.team, "due_at": alert.due_at.isoformat(),
                  "url": link},
    }


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"


def webhook_for(team: str, hooks: dict[str, str]) -> str | None:
    return hooks.get(team) or hooks.get("*") or None


def deliver(factory: sessionmaker[Session], client: httpx.Client, hooks: dict[str, str], public_url: str,
            now: datetime) -> tuple[int, int]:
    """Post undelivered alerts to their team's webhook; returns (delivered, failed).

    The post happens outside any transaction."""
    delivered = failed = 0
    with factory() as s:
        pending = [(alert_id, url) for alert_id, team in s.execute(select(SlaAlert.id, SlaAlert.team).where(
            SlaAlert.delivered_at.is_(None), SlaAlert.attempts < MAX_ATTEMPTS).order_by(SlaAlert.id).limit(500))
            if (url := webhook_for(team, hooks))]
    for alert_id, url in pending:
        with unit_of_work(factory) as s:  # the lease: only one process posts a given alert
            claimed = s.execute(update(SlaAlert).where(
                SlaAlert.id == alert_id, SlaAlert.delivered_at.is_(None),
                (SlaAlert.lease_until.is_(None)) | (SlaAlert.lease_until < now),
            ).values(lease_until=now + LEASE, attempts=SlaAlert.attempts + 1)).rowcount  # type: ignore[attr-defined]
            alert = s.get(SlaAlert, alert_id) if claimed else None
            body = payload(alert, now, public_url) if alert is not None else None
        if body is None:
            continue
        error: str | None = None
        try:
            res = client.post(url, json=body)
            if res.status_code >= 300:
                error = f"HTTP {res.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        with unit_of_work(factory) as s:
            row = s.get(SlaAlert, alert_id)
            assert row is not None
            row.lease_until = None
            if error is None:
                row.delivered_at = now
                row.last_error = None
                delivered += 1
            else:
                row.last_error = error
                failed += 1
                if row.attempts >= MAX_ATTEMPTS:
                    audit.record(s, action="sla.alert_undeliverable", subject_type=row.subject_type,
                                 subject_id=row.subject_id, data={"alert_id": row.id, "error": error}, at=now)
                    log.error("SLA alert %s for %s could not be delivered after %d attempts: %s", row.id,
                              row.reference, row.attempts, error)
    return delivered, failed


def sweep(factory: sessionmaker[Session], *, now: datetime, warning: timedelta, hooks: dict[str, str],
          public_url: str, client: httpx.Client | None = None) -> SweepReport:
    """Raise what is newly late, then deliver what is undelivered (when a webhook is configured)."""
    report = SweepReport()
    with unit_of_work(factory) as s:
        report.raised = len(raise_alerts(s, now, warning))
    if hooks:
        own = client is None
        http = client or httpx.Client(timeout=5.0)
        try:
            report.delivered, report.failed = deliver(factory, http, hooks, public_url, now)
        finally:
            if own:
                http.close()
    return report


def sweep_configured(factory: sessionmaker[Session], settings: Settings, now: datetime) -> SweepReport:
    """``sweep`` with the warning period, webhooks and console URL from the settings (app and CLI)."""
    return sweep(factory, now=now, warning=timedelta(days=settings.sla_ae_warning_days),
                 hooks=settings.sla_alert_webhooks, public_url=settings.public_url)
