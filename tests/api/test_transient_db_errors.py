"""A turn step that fails on a transient database error is retried, not dropped.

SQLite's "database is locked", PostgreSQL's deadlock / serialization failures and a server that is
down all surface as ``OperationalError``; each turn step is one transaction, so retrying it repeats
nothing that was committed. A message must not end ``failed`` (unanswered) because two writers
collided once, nor hang unanswered because the database was away for a while; a turn that fails
for another reason is set aside with the HCP told. (The real PostgreSQL outage: test_database_outage.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations import copy
from api.conversations import service as conversations
from api.conversations.drafts import ReplyDraft
from api.conversations.models import InboxItem, Message
from api.db import unit_of_work
from api.pipeline.turn import NoSafetyFindings, TurnProcessor
from tests.fakes.rasa import FakeRasa


def _locked() -> OperationalError:
    return OperationalError("UPDATE conversation ...", {}, Exception("database is locked"))


def _flaky(real: Callable[..., Any], failures: int) -> tuple[Callable[..., Any], list[int]]:
    calls = [0]

    def step(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= failures:
            raise _locked()
        return real(*args, **kwargs)

    return step, calls


def _processor(client: TestClient) -> TurnProcessor:
    proc: TurnProcessor = client.app.state.concierge.worker.processor  # type: ignore[attr-defined]
    proc.transient_backoff_s = 0.001
    return proc


def _inbound(engine: Engine, text: str) -> tuple[Message, InboxItem]:
    with Session(engine) as s:
        msg = s.execute(select(Message).where(Message.body == text, Message.direction == "in")).scalar_one()
        inbox = s.execute(select(InboxItem).where(InboxItem.message_id == msg.id)).scalar_one()
        return msg, inbox


@pytest.mark.parametrize("step", ["safety_hook", "_queue"])
def test_a_step_failing_twice_on_a_locked_database_is_retried_and_answered_once(
        step: str, make_client: Callable[..., TestClient], engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    rasa = FakeRasa()
    client = make_client(rasa)
    proc = _processor(client)
    # the safety hook runs inside the screening transaction, _queue inside the finishing one
    flaky, calls = _flaky(getattr(proc, step), failures=2)
    monkeypatch.setattr(proc, step, flaky)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    text = f"retry me please ({step})"
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": text})
    assert r.status_code == 200, r.text
    replies = r.json()["messages"]
    assert len(replies) == 1 and replies[0]["text"]
    assert calls[0] == 3
    msg, inbox = _inbound(engine, text)
    assert (msg.status, inbox.status) == ("processed", "done")
    with Session(engine) as s:
        out = s.scalar(select(func.count()).select_from(Message).where(
            Message.conversation_id == msg.conversation_id, Message.direction == "out"))
    assert out == 1                     # one reply, not one per attempt
    assert len(rasa.calls) == 1         # Rasa asked once: only the failed step is retried


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_database_unavailable_past_the_deadline_leaves_the_message_pending_until_the_sweeper_finishes_it(
        make_client: Callable[..., TestClient], engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    rasa = FakeRasa()
    client = make_client(rasa, turn_retry_deadline_s=0.3, inbox_sweep_interval_s=0.2, rasa_timeout=1.0,
                         reply_wait_margin_s=0.5)
    proc = _processor(client)
    down = [True]
    real_finish = proc._finish

    def finish(*args: Any) -> Any:
        if down[0]:
            raise _locked()
        return real_finish(*args)

    monkeypatch.setattr(proc, "_finish", finish)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    text = "asked while the database is away"
    started = time.monotonic()
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": text})
    assert time.monotonic() - started < 1.0 + 0.5 + 1.0   # never hangs past the deadline + margin
    assert r.status_code == 200 and r.json()["messages"] == [] and r.json()["pending"] is True
    msg, inbox = _inbound(engine, text)
    assert inbox.status == "pending" and inbox.screened_at is not None   # stored, screened, not lost
    down[0] = False                                                        # the database is back

    def answered() -> bool:
        got = client.get(f"/api/webchat/sessions/{sid}/messages", params={"after": msg.id}).json()["messages"]
        return any(m["direction"] == "out" for m in got)

    _wait_for(answered)                    # no new message needed: the sweeper resumes the turn
    msg, inbox = _inbound(engine, text)
    assert (msg.status, inbox.status) == ("processed", "done")
    assert len(rasa.calls) == 1            # Rasa's answer was kept in memory, not asked for again


def test_a_turn_failing_for_another_reason_sets_the_message_aside_and_tells_the_hcp(
        make_client: Callable[..., TestClient], engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(FakeRasa())
    proc = _processor(client)
    calls = [0]

    def broken(*_a: Any, **_k: Any) -> Any:
        calls[0] += 1
        raise ValueError("a bug, not a lock")

    monkeypatch.setattr(proc, "safety_hook", broken)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "a bug hits this one"})
    assert r.status_code == 200
    assert [m["text"] for m in r.json()["messages"]] == [copy.TURN_SET_ASIDE]
    # not retried as a lock: tried as the message was stored (TurnProcessor.screen_on_receipt), by the
    # turn's step 1, and once more alone when set aside
    assert calls[0] == 3
    msg, inbox = _inbound(engine, "a bug hits this one")
    assert inbox.status == "failed" and "ValueError" in (inbox.error or "")
    assert msg.body == "a bug hits this one"      # the message itself is kept
    with Session(engine) as s:
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "message.set_aside",
                                                   AuditEvent.subject_id == str(msg.id))).scalar_one()
    assert event.data["screened"] is False


def test_a_message_set_aside_after_its_screen_still_gets_the_safety_replies(
        make_client: Callable[..., TestClient], engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(FakeRasa())
    proc = _processor(client)

    def screen(session: Session, conv: Any, msg: Any, now: Any) -> Any:
        return NoSafetyFindings(replies=[ReplyDraft(text="Thank you, this is recorded for our safety team.")])

    def broken_finish(*_a: Any) -> Any:
        raise KeyError("a bug after the screen")

    monkeypatch.setattr(proc, "safety_hook", screen)
    monkeypatch.setattr(proc, "_finish", broken_finish)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "screened, then a bug"})
    texts = [m["text"] for m in r.json()["messages"]]
    assert texts == ["Thank you, this is recorded for our safety team.", copy.TURN_SET_ASIDE]


def test_a_turn_resumed_after_its_screen_committed_does_not_screen_again(
        make_client: Callable[..., TestClient], engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between the screen's commit and the reply: the re-run resumes, it does not re-screen
    (which would link an adverse event's message to its case twice and fail for good)."""
    client = make_client(FakeRasa())
    proc = _processor(client)
    screens = [0]

    def screen(session: Session, conv: Any, msg: Any, now: Any) -> Any:
        screens[0] += 1
        return NoSafetyFindings(replies=[ReplyDraft(text=f"screen reply {screens[0]}")])

    monkeypatch.setattr(proc, "safety_hook", screen)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    with unit_of_work(proc.session_factory) as s:
        conv = conversations.get_by_session_token(s, sid)
        stored = conversations.persist_inbound(s, conv, text="interrupted turn", now=proc.clock.now())
        inbox_id = stored.inbox.id
        conv_id = conv.id
    leases = client.app.state.concierge.worker.leases  # type: ignore[attr-defined]
    if leases is not None:  # PostgreSQL: turn steps run only under the conversation's lease, as the worker's do
        assert leases.acquire(conv_id)
    proc._screen(inbox_id)                      # the first run got this far, then the process died
    result = client.portal.call(proc.process, inbox_id)   # the restart's re-run  # type: ignore[union-attr]
    assert screens[0] == 1
    with Session(engine) as s:
        texts = [s.get(Message, i).body for i in result.reply_ids]  # type: ignore[union-attr]
    assert texts[0] == "screen reply 1" and len(texts) == 2      # the stored safety reply, then Rasa's


def test_a_message_the_database_cannot_store_in_time_is_refused_with_a_503_and_its_retry_is_stored_once(
        make_client: Callable[..., TestClient], engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("holds SQLite's write lock from another connection")
    import sqlite3

    client = make_client(FakeRasa(), rasa_timeout=1.0, reply_wait_margin_s=0.5)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    body = {"text": "stored once, after a busy moment", "client_message_id": "busy-1"}
    holder = sqlite3.connect(str(engine.url.database), timeout=30)
    holder.execute("BEGIN EXCLUSIVE")                 # a backup or an admin shell holding the lock
    try:
        started = time.monotonic()
        r = client.post("/api/webchat/messages", json=body, headers={"X-Chat-Session": sid})
        took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert r.status_code == 503 and r.json()["error"]["code"] == "database_busy"
    assert r.headers["retry-after"] == "2" and took < 1.0 + 0.5 + 1.0   # never past the deadline
    again = client.post("/api/webchat/messages", json=body, headers={"X-Chat-Session": sid})
    assert again.status_code == 200 and again.json()["messages"]
    with Session(engine) as s:
        stored = s.scalar(select(func.count()).select_from(Message).where(Message.body == body["text"]))
    assert stored == 1
