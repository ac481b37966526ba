"""A real PostgreSQL outage in the middle of a turn (a throw-away cluster this module starts).

The database is stopped while the turn waits for Rasa: the adverse event was already committed by
the screen; the reply cannot be stored. The web chat request must still answer within the Rasa
deadline plus its margin, the turn must finish by itself once the database is back (no new
message needed), nothing may be stored twice, and shutting down during an outage must finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.app import create_app, default_safety_hook
from api.conversations.models import InboxItem, Message
from api.db import make_engine
from api.migrate import upgrade
from api.safety.models import AdverseEventMessage
from api.settings import Settings
from tests.conftest import free_port
from tests.fakes.pg_cluster import PgCluster, available
from tests.fakes.rasa import FakeRasa

pytestmark = pytest.mark.skipif(not available(), reason="initdb/pg_ctl not installed")

REPORT = "a patient of mine came out in hives after the first cardiovex tablet, how should I proceed"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster(free_port()).init().start()
    yield pg
    pg.destroy()


@pytest.fixture()
def settings(tmp_path: Path, model_dir: Path, cluster: PgCluster) -> Settings:
    """The suite's `settings` without the suite's database: this module only ever uses its own cluster,
    so it runs the same in both phases of CI and belongs to the SQLite one (not --database-tests-only)."""
    return Settings(database_url=cluster.url, var_dir=tmp_path / "var", model_dir=model_dir,
                    rasa_url="http://127.0.0.1:9", rasa_timeout=2.0)


@pytest.fixture()
def pg_engine(cluster: PgCluster) -> Iterator[Engine]:
    if not cluster.running():
        cluster.start()
    eng = make_engine(cluster.url)
    upgrade(eng)
    yield eng
    eng.dispose()


class SignallingRasa(FakeRasa):
    """Tells the test when a turn reached Rasa, then answers after ``delay``."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay=delay)
        self.reached = threading.Event()

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/status":
            self.reached.set()
        return await super().handler(request)


def _app(engine: Engine, settings: Settings, rasa: FakeRasa, *, lease_s: float = 30.0) -> TestClient:
    s = settings.model_copy(update={
        "database_url": str(engine.url.render_as_string(hide_password=False)), "rasa_timeout": 3.0,
        "reply_wait_margin_s": 1.0, "turn_retry_deadline_s": 2.0, "inbox_sweep_interval_s": 0.5,
        "conversation_lease_s": lease_s})
    app = create_app(s, engine=engine, safety_hook=default_safety_hook(s), rasa_transport=rasa.transport(),
                     warm_knowledge=False)
    client = TestClient(app)
    client.__enter__()
    return client


def _post_in_background(client: TestClient, url: str, text: str) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        r = client.post(url, json={"text": text})
        out.update(status=r.status_code, body=r.json(), seconds=time.monotonic() - started)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # the database may still be coming back
            pass
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def _inbound(engine: Engine, text: str) -> tuple[Message, InboxItem, int, int]:
    with Session(engine) as s:
        msg = s.execute(select(Message).where(Message.body == text)).scalar_one()
        inbox = s.execute(select(InboxItem).where(InboxItem.message_id == msg.id)).scalar_one()
        replies = s.scalar(select(func.count()).select_from(Message).where(Message.in_reply_to == msg.id)) or 0
        links = s.scalar(select(func.count()).select_from(AdverseEventMessage)
                         .where(AdverseEventMessage.message_id == msg.id)) or 0
        return msg, inbox, replies, links


def test_a_turn_cut_off_by_a_postgresql_outage_finishes_by_itself_when_the_database_is_back(
        cluster: PgCluster, pg_engine: Engine, settings: Settings) -> None:
    rasa = SignallingRasa(delay=1.0)
    client = _app(pg_engine, settings, rasa)
    try:
        sid = client.post("/api/webchat/sessions").json()["session_id"]
        url = f"/api/webchat/sessions/{sid}/messages"
        thread, out = _post_in_background(client, url, REPORT)
        assert rasa.reached.wait(120), out        # screened and committed; the turn is in Rasa now
        cluster.stop("fast")
        thread.join(30)
        assert out["status"] == 200 and out["seconds"] < 3.0 + 1.0 + 1.0   # no hang past deadline + margin
        assert out["body"]["pending"] is True
        time.sleep(3.0)                           # down past the turn's retry deadline: left for the sweeper
        cluster.start()

        def answered() -> bool:
            return _inbound(pg_engine, REPORT)[1].status == "done"

        _until(answered, 30)
        msg, _inbox, replies, links = _inbound(pg_engine, REPORT)
        assert msg.status == "processed" and links == 1     # the case was linked once, before the outage
        listed = client.get(url, params={"after": msg.id}).json()["messages"]
        assert any("AE-" in m["text"] for m in listed)      # the acknowledgement went out after all
        assert replies == len(listed)                       # each reply stored once
        assert len(rasa.calls) == 1                         # Rasa asked once for the turn (its AE-turn text)
    finally:
        started = time.monotonic()
        client.__exit__(None, None, None)
        assert time.monotonic() - started < 10


def test_shutting_down_during_an_outage_finishes_and_the_next_start_answers_the_message(
        cluster: PgCluster, pg_engine: Engine, settings: Settings, tmp_path: Path) -> None:
    rasa = SignallingRasa(delay=1.0)
    # The lease this app cannot release (the database is down when it stops) is what the next start waits
    # for before it takes the conversation over: 4 s instead of the default 30 s.
    client = _app(pg_engine, settings, rasa, lease_s=4.0)
    text = REPORT + " (second report)"
    try:
        sid = client.post("/api/webchat/sessions").json()["session_id"]
        url = f"/api/webchat/sessions/{sid}/messages"
        thread, out = _post_in_background(client, url, text)
        assert rasa.reached.wait(120), out
        cluster.stop("fast")
        thread.join(30)
        assert out["status"] == 200
    finally:
        started = time.monotonic()
        client.__exit__(None, None, None)         # SIGTERM's path: the lifespan's shutdown
        stopped_in = time.monotonic() - started
    assert stopped_in < 10, f"shutdown took {stopped_in:.1f}s"
    cluster.start()
    _msg, inbox, replies, _links = _inbound(pg_engine, text)
    assert inbox.status == "pending" and replies == 0      # kept, not lost, not half-done
    restarted = _app(pg_engine, settings, FakeRasa())
    try:
        _until(lambda: _inbound(pg_engine, text)[1].status == "done", 30)
        _msg, _inbox, replies, links = _inbound(pg_engine, text)
        assert links == 1 and replies >= 1                  # the acknowledgement, stored once the turn ran
        with Session(pg_engine) as s:
            texts = s.scalars(select(Message.body).where(Message.in_reply_to == _msg.id)).all()
        assert any("AE-" in t for t in texts)
    finally:
        restarted.__exit__(None, None, None)


def test_requests_during_an_outage_get_a_json_503_with_retry_after(
        cluster: PgCluster, pg_engine: Engine, settings: Settings) -> None:
    client = _app(pg_engine, settings, FakeRasa())
    try:
        sid = client.post("/api/webchat/sessions").json()["session_id"]
        cluster.stop("fast")
        for method, path, body in (("POST", "/api/webchat/sessions", None),
                                   ("POST", f"/api/webchat/sessions/{sid}/messages", {"text": "anyone there?"}),
                                   ("GET", f"/api/webchat/sessions/{sid}/messages", None)):
            r = client.request(method, path, json=body)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["retry-after"] == "5"
            assert r.json()["error"]["code"] == "database_unavailable"
        cluster.start()
        _until(lambda: client.post("/api/webchat/sessions").status_code == 201, 20)   # and back by itself
    finally:
        client.__exit__(None, None, None)
