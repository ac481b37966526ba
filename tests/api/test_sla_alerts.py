"""SLA alerts: what is late is raised once, audited, and posted to its team's webhook (metadata only)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.cli import main
from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.db import make_engine, make_session_factory, unit_of_work
from api.handoffs.models import Handoff
from api.migrate import upgrade
from api.requests.models import ServiceRequest
from api.safety.models import AdverseEvent
from api.settings import Settings
from api.sla import service as sla
from api.sla.models import SlaAlert

WARNING = timedelta(days=2)
CANARIES = ("CANARY-SUMMARY-7Q", "CANARY-DETAIL-7Q", "CANARY-AE-NARRATIVE-7Q")


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def _conv(s: Session, at: datetime) -> Conversation:
    conv, _ = conversations.create_webchat(s, now=at, market="GB")
    s.flush()
    return conv


def _handoff(s: Session, conv: Conversation, due: datetime, *, status: str = "queued", target: str = "rep") -> Handoff:
    row = Handoff(reference=_ref("H"), conversation_id=conv.id, target=target, reason="asked", status=status,
                  summary=f"HCP asked about a dose. {CANARIES[0]}", sla_due_at=due, created_at=due - timedelta(hours=4))
    s.add(row)
    s.flush()
    return row


def _request(s: Session, conv: Conversation, due: datetime, *, status: str = "open",
             team: str = "customer_service") -> ServiceRequest:
    row = ServiceRequest(reference=_ref("SR"), kind="samples", status=status, team=team, conversation_id=conv.id,
                         channel="webchat", details={"delivery_address": CANARIES[1]},
                         created_at=due - timedelta(days=2), sla_due_at=due)
    s.add(row)
    s.flush()
    return row


def _case(s: Session, conv: Conversation, due: datetime, *, status: str = "new") -> AdverseEvent:
    row = AdverseEvent(reference=_ref("AE"), conversation_id=conv.id, raw_text=f"rash after dose {CANARIES[2]}",
                       day0_at=due - timedelta(days=15), due_at=due, channel="webchat", status=status,
                       created_at=due - timedelta(days=15))
    s.add(row)
    s.flush()
    return row


def test_each_late_item_raises_one_audited_alert_once(session: Session) -> None:
    now = datetime(1986, 3, 1, 12, 0, tzinfo=UTC)  # far from other tests' rows in the shared database
    conv = _conv(session, now - timedelta(days=30))
    late = now - timedelta(hours=1)
    expected = {
        (_handoff(session, conv, late).reference, "overdue"),
        (_request(session, conv, late).reference, "overdue"),
        (_request(session, conv, late, status="in_progress", team="market_access").reference, "overdue"),
        (_case(session, conv, now + timedelta(days=1)).reference, "due_soon"),
        (_case(session, conv, late, status="triaged").reference, "overdue"),
    }
    # Not late, or done: no alert.
    _handoff(session, conv, late, status="claimed")
    not_yet = _handoff(session, conv, now + timedelta(minutes=5))
    _request(session, conv, late, status="resolved")
    _request(session, conv, late, status="cannot_fulfil")
    _case(session, conv, late, status="submitted")
    _case(session, conv, now + timedelta(days=10))

    raised = sla.raise_alerts(session, now, WARNING)
    assert {(a.reference, a.kind) for a in raised} == expected
    assert sla.raise_alerts(session, now, WARNING) == []  # once per breach
    events = session.execute(select(AuditEvent).where(AuditEvent.action == "sla.alert_raised",
                                                      AuditEvent.subject_id.in_([a.subject_id for a in raised]))
                             ).scalars().all()
    assert len(events) == len(raised)
    assert all(not any(c in json.dumps(e.data) for c in CANARIES) for e in events)

    # A case that was due soon and is now overdue alerts again, as overdue; so does a handoff
    # transferred with a new SLA that it misses too, and the one that was not late yet.
    soon = next(a for a in raised if a.kind == "due_soon")
    handoff = session.execute(select(Handoff).where(Handoff.conversation_id == conv.id, Handoff.status == "queued",
                                                    Handoff.sla_due_at == late)).scalar_one()
    handoff.sla_due_at = now + timedelta(hours=1)
    again = sla.raise_alerts(session, now + timedelta(days=1, hours=2), WARNING)
    assert {(a.reference, a.kind) for a in again} == {(soon.reference, "overdue"), (handoff.reference, "overdue"),
                                                      (not_yet.reference, "overdue")}


class Hook:
    """A loopback incoming webhook: records JSON bodies per path; fails the first ``fail`` posts."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.fail = 0
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.lock:
                    failing = hook.fail > 0
                    hook.fail -= 1 if failing else 0
                    if not failing:
                        hook.bodies.setdefault(self.path, []).append(body)
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def references(self, path: str) -> list[str]:
        return [b["alert"]["reference"] for b in self.bodies.get(path, [])]


@pytest.fixture()
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.server.shutdown()


def _late_world(engine: Engine, now: datetime) -> dict[str, str]:
    factory = make_session_factory(engine)
    with unit_of_work(factory) as s:
        conv = _conv(s, now - timedelta(days=30))
        late = now - timedelta(hours=3)
        return {"rep": _handoff(s, conv, late).reference, "msl": _handoff(s, conv, late, target="msl").reference,
                "desk": _request(s, conv, late).reference, "safety": _case(s, conv, late).reference}


def test_alerts_go_to_their_teams_webhook_with_metadata_only(engine: Engine, hook: Hook) -> None:
    now = datetime(1987, 5, 4, 9, 0, tzinfo=UTC)
    refs = _late_world(engine, now)
    factory = make_session_factory(engine)
    hooks = {"rep": hook.url + "/reps", "safety": hook.url + "/safety", "*": hook.url + "/ops"}
    report = sla.sweep(factory, now=now, warning=WARNING, hooks=hooks, public_url="https://concierge.example")
    assert report.raised >= 4 and report.failed == 0
    assert refs["rep"] in hook.references("/reps") and refs["rep"] not in hook.references("/ops")
    assert refs["safety"] in hook.references("/safety")  # a case reference never reaches the reps' channel
    assert refs["safety"] not in hook.references("/reps") + hook.references("/ops")
    assert {refs["msl"], refs["desk"]} <= set(hook.references("/ops"))
    bodies = [b for path in hook.bodies for b in hook.bodies[path]]
    assert not any(c in json.dumps(b) for b in bodies for c in CANARIES)
    rep = next(b for b in hook.bodies["/reps"] if b["alert"]["reference"] == refs["rep"])
    assert rep["alert"]["url"].startswith("https://concierge.example/console/inbox/")
    assert rep["text"] == (f"Overdue: handoff not claimed {refs['rep']} (team rep), 3 h past due "
                           f"(1987-05-04 06:00 UTC). {rep['alert']['url']}")
    # Delivered once: the next sweep posts nothing for these.
    before = sum(len(v) for v in hook.bodies.values())
    sla.sweep(factory, now=now + timedelta(minutes=1), warning=WARNING, hooks=hooks, public_url="https://x")
    after = [b["alert"]["reference"] for v in hook.bodies.values() for b in v[before:]]
    assert not set(after) & set(refs.values())


def test_a_failed_post_is_retried_on_later_sweeps_and_delivered_once(engine: Engine, hook: Hook) -> None:
    now = datetime(1988, 6, 1, 9, 0, tzinfo=UTC)
    refs = _late_world(engine, now)
    factory = make_session_factory(engine)
    hooks = {"*": hook.url + "/all"}
    # Drain whatever earlier tests left undelivered so only this test's alerts are in play.
    sla.sweep(factory, now=now - timedelta(days=400), warning=WARNING, hooks=hooks, public_url="http://x")
    hook.bodies.clear()
    hook.fail = 6  # more than this test's four alerts: every first attempt fails
    first = sla.sweep(factory, now=now, warning=WARNING, hooks=hooks, public_url="http://x")
    assert first.raised == 4 and first.failed == 4 and first.delivered == 0
    with Session(engine) as s:
        rows = s.execute(select(SlaAlert).where(SlaAlert.reference.in_(refs.values()))).scalars().all()
        states = {(r.attempts, r.last_error, r.delivered_at, r.lease_until) for r in rows}
        assert states == {(1, "HTTP 500", None, None)}
    second = sla.sweep(factory, now=now + timedelta(minutes=1), warning=WARNING, hooks=hooks, public_url="http://x")
    assert (second.raised, second.failed, second.delivered) == (0, 2, 2)
    third = sla.sweep(factory, now=now + timedelta(minutes=2), warning=WARNING, hooks=hooks, public_url="http://x")
    assert (third.raised, third.failed, third.delivered) == (0, 0, 2)
    assert sorted(hook.references("/all")) == sorted(refs.values())  # each exactly once


def test_an_alert_whose_team_has_no_webhook_is_kept_not_dropped(engine: Engine, hook: Hook) -> None:
    now = datetime(1989, 1, 10, 9, 0, tzinfo=UTC)
    refs = _late_world(engine, now)
    factory = make_session_factory(engine)
    sla.sweep(factory, now=now, warning=WARNING, hooks={"rep": hook.url + "/reps"}, public_url="http://x")
    with Session(engine) as s:
        case = s.execute(select(SlaAlert).where(SlaAlert.reference == refs["safety"])).scalar_one()
        assert (case.delivered_at, case.attempts) == (None, 0)  # waiting for a safety webhook, not failed
    sla.sweep(factory, now=now, warning=WARNING, hooks={"*": hook.url + "/later"}, public_url="http://x")
    assert refs["safety"] in hook.references("/later")


def test_two_processes_sweeping_at_once_post_each_alert_once(engine: Engine, hook: Hook) -> None:
    now = datetime(1990, 2, 2, 9, 0, tzinfo=UTC)
    factory = make_session_factory(engine)
    hooks = {"*": hook.url + "/both"}
    sla.sweep(factory, now=now - timedelta(days=400), warning=WARNING, hooks=hooks, public_url="http://x")
    refs = [r for _ in range(3) for r in _late_world(engine, now).values()]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sla.sweep(factory, now=now, warning=WARNING, hooks=hooks, public_url="http://x")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    posted = [r for r in hook.references("/both") if r in refs]
    assert sorted(posted) == sorted(refs)


def test_a_webhook_that_is_not_an_http_url_is_refused() -> None:
    with pytest.raises(ValueError, match="sla_alert_webhooks\\['safety'\\] must be an http\\(s\\) URL"):
        Settings(sla_alert_webhooks={"safety": "mailto:pv@example.com"})


@pytest.fixture()
def own_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """A database of this test's own: the CLI and the app sweep with the real clock."""
    url = f"sqlite:///{tmp_path / 'sla.db'}"
    eng = make_engine(url)
    upgrade(eng)
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", url)
    return eng


def test_the_cli_sweeps_and_lists_alerts(own_db: Engine, hook: Hook, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    refs = _late_world(own_db, datetime.now(UTC))
    assert main(["sla", "sweep"]) == 0
    assert capsys.readouterr().out.strip() == ("4 alerts raised, 0 delivered, 0 failed "
                                               "(no CONCIERGE_SLA_ALERT_WEBHOOKS: recorded only)")
    assert main(["sla", "alerts", "--undelivered"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(a["reference"] for a in listed) == sorted(refs.values())
    assert not any(c in json.dumps(listed) for c in CANARIES)
    monkeypatch.setenv("CONCIERGE_SLA_ALERT_WEBHOOKS", json.dumps({"*": hook.url + "/cli"}))
    assert main(["sla", "sweep"]) == 0
    assert capsys.readouterr().out.strip() == "0 alerts raised, 4 delivered, 0 failed"
    with pytest.raises(SystemExit) as exc:
        main(["sla", "alerts", "--limit", "0"])
    assert exc.value.code == 2
    assert "must be at least 1, not 0" in capsys.readouterr().err


def test_the_app_sweeps_in_the_background(own_db: Engine, hook: Hook, settings: Settings) -> None:
    from api.app import create_app
    from api.pipeline.turn import null_safety_hook

    refs = _late_world(own_db, datetime.now(UTC))
    app_settings = settings.model_copy(update={"database_url": str(own_db.url), "sla_sweep_interval_s": 0.2,
                                               "sla_alert_webhooks": {"*": hook.url + "/app"}})
    # No safety screen here: its warm-up thread (sklearn, warnings filters) would outlive the test.
    app = create_app(app_settings, engine=own_db, safety_hook=null_safety_hook, warm_knowledge=False)
    with TestClient(app):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(hook.references("/app")) < 4:
            time.sleep(0.1)
    assert sorted(hook.references("/app")) == sorted(refs.values())
