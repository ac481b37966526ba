"""A web chat message whose conversation has nothing else pending is screened in the transaction that
stores it (TurnProcessor.screen_on_receipt): the turn saves a transaction, and nothing about safety,
order or loss changes — a screen that fails there, an outcome lost before the worker ran, and a
message stored while another turn runs are all handled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from api.conversations import service as conversations
from api.conversations.models import Conversation, Direction, InboxItem, InboxStatus, Message
from api.pipeline.turn import NoSafetyFindings, SafetyOutcomeLike
from api.settings import Settings
from tests.fakes.rasa import FakeRasa


class CountingScreen:
    """A safety hook that records each message it screens and can fail its first ``fail`` calls."""

    def __init__(self, fail: int = 0) -> None:
        self.seen: list[str] = []
        self.fail = fail

    def __call__(self, session: Session, conv: Conversation, msg: Message, now: datetime) -> SafetyOutcomeLike:
        self.seen.append(msg.body)
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("screen broke")
        return NoSafetyFindings()


@pytest.fixture()
def chat(open_app: Callable[..., TestClient], settings: Settings) -> Callable[..., TestClient]:
    def open_(screen: CountingScreen, rasa: FakeRasa | None = None) -> TestClient:
        return open_app(settings, rasa, safety_hook=screen)

    return open_


def _post(client: TestClient, sid: str, text: str) -> dict[str, Any]:
    r = client.post("/api/webchat/messages", json={"text": text}, headers={"X-Chat-Session": sid})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _inbox(engine: Engine, sid: str, text: str) -> InboxItem:
    with Session(engine) as s:
        conv = conversations.get_by_session_token(s, sid)
        row = s.execute(select(InboxItem).join(Message, Message.id == InboxItem.message_id)
                        .where(InboxItem.conversation_id == conv.id, Message.body == text)).scalar_one()
        s.expunge(row)
        return row


def test_an_idle_conversations_message_is_screened_as_it_is_stored(chat: Callable[..., TestClient],
                                                                    engine: Engine) -> None:
    screen = CountingScreen()
    client = chat(screen)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    audited: list[str] = []  # transactions of the turn that wrote audit events (lease bookkeeping writes none)

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_EVENT"):
            audited.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        answer = _post(client, sid, "when does the medical team answer?")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert [m["text"] for m in answer["messages"]] == ["echo: when does the medical team answer?"]
    assert screen.seen == ["when does the medical team answer?"]  # screened once
    row = _inbox(engine, sid, "when does the medical team answer?")
    assert row.status == InboxStatus.done and row.attempts == 1 and row.screened_at is not None
    # stored + screened in one transaction, replies in the other (each chains its events in one INSERT): not three
    assert len(audited) == 2


def test_a_message_behind_a_pending_one_is_left_to_its_turn(chat: Callable[..., TestClient], engine: Engine) -> None:
    screen = CountingScreen()
    processor = chat(screen).app.state.concierge.worker.processor  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with Session(engine) as s:  # rolled back: no pending rows left for the other tests' workers
        conv, _token = conversations.create_webchat(s, now=now, market="GB")
        first = conversations.persist_inbound(s, conv, text="first, not processed yet", now=now)
        assert processor.screen_on_receipt(s, first.inbox, first.message, conv, now) is not None
        first.inbox.screened_at = None  # as if it were stored unscreened (still pending either way)
        second = conversations.persist_inbound(s, conv, text="second", now=now)
        # the first is pending: its turn has not run, so the second waits for its own turn's screen
        assert processor.screen_on_receipt(s, second.inbox, second.message, conv, now) is None
        assert second.inbox.screened_at is None
        s.rollback()
    assert screen.seen == ["first, not processed yet"]


def test_a_screen_failing_on_receipt_loses_nothing(chat: Callable[..., TestClient], engine: Engine) -> None:
    screen = CountingScreen(fail=1)
    client = chat(screen)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    answer = _post(client, sid, "can I get the dosing card?")
    # stored without the failed screen, screened again by its turn, answered as usual
    assert [m["text"] for m in answer["messages"]] == ["echo: can I get the dosing card?"]
    assert screen.seen == ["can I get the dosing card?", "can I get the dosing card?"]
    row = _inbox(engine, sid, "can I get the dosing card?")
    assert row.status == InboxStatus.done and row.attempts == 1
    with Session(engine) as s:
        conv = conversations.get_by_session_token(s, sid)
        inbound = s.execute(select(Message).where(Message.conversation_id == conv.id,
                                                  Message.direction == Direction.inbound)).scalars().all()
        assert [m.body for m in inbound] == ["can I get the dosing card?"]  # stored once


def test_an_outcome_lost_before_its_turn_is_taken_from_the_database(chat: Callable[..., TestClient],
                                                                    engine: Engine,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    screen = CountingScreen()
    client = chat(screen)
    processor = client.app.state.concierge.worker.processor  # type: ignore[attr-defined]
    # the in-memory outcome never reaches the worker (the process that stored it died; another runs the turn)
    monkeypatch.setattr(processor, "prescreened", lambda inbox_id, screened: None)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    answer = _post(client, sid, "is there a patient leaflet in Spanish?")
    assert [m["text"] for m in answer["messages"]] == ["echo: is there a patient leaflet in Spanish?"]
    assert screen.seen == ["is there a patient leaflet in Spanish?"]  # not screened twice
    row = _inbox(engine, sid, "is there a patient leaflet in Spanish?")
    # step 1 resumed from the stored outcome: one process took the turn up, once
    assert row.status == InboxStatus.done and row.attempts == 1


def test_a_message_sent_while_a_turn_runs_follows_it_in_order(chat: Callable[..., TestClient], engine: Engine) -> None:
    screen = CountingScreen()
    rasa = FakeRasa(delay=0.4)
    client = chat(screen, rasa)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    answers: dict[str, dict[str, Any]] = {}

    def send(text: str) -> None:
        answers[text] = _post(client, sid, text)

    first = threading.Thread(target=send, args=("first question",))
    first.start()
    deadline = time.monotonic() + 5
    while len(rasa.calls) < 1 and time.monotonic() < deadline:  # the first turn is with Rasa now
        time.sleep(0.01)
    send("second question")
    first.join(timeout=10)
    assert [m["text"] for m in answers["first question"]["messages"]] == ["echo: first question"]
    assert [m["text"] for m in answers["second question"]["messages"]] == ["echo: second question"]
    assert [c["message"] for c in rasa.calls] == ["first question", "second question"] and rasa.overlaps == 0
    assert screen.seen == ["first question", "second question"]
    # the second was stored while the first was pending: screened by its own turn, after the first
    assert _inbox(engine, sid, "second question").attempts == 1
    with Session(engine) as s:
        conv = conversations.get_by_session_token(s, sid)
        bodies = [m.body for m in s.execute(select(Message).where(Message.conversation_id == conv.id)
                                            .order_by(Message.id)).scalars()]
    # stored in the order sent; the replies in the order of the turns
    assert bodies[-4:] == ["first question", "second question", "echo: first question", "echo: second question"]
