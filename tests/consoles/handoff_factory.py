"""Builders for handoff and Inbox tests: HCP web chat sessions, handoffs, medical canaries, apps on a FakeClock."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.clock import FakeClock
from api.conversations import service as conversations
from api.conversations.models import Conversation, InboxItem, InboxStatus, Message, MessageStatus
from api.db import unit_of_work
from api.handoffs.service import open_handoff
from api.hcps.models import Hcp
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.settings import Settings
from tests.consoles.conftest import StaffAccount, login
from tests.fakes.rasa import FakeRasa

# A Monday, 09:00 in London (GMT in November): staff are at work.
MONDAY_MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
# The Saturday before: staff are not. (Both lie in the past: other tests look for the newest rows.)
SATURDAY = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@dataclass
class HcpChat:
    """An HCP's web chat session: the secret the page holds and the conversation behind it."""

    token: str
    conversation_id: str

    def url(self) -> str:
        return f"/api/webchat/sessions/{self.token}/messages"

    def say(self, client: TestClient, text: str, payload: str | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"text": text}
        if payload is not None:
            body["payload"] = payload
        res = client.post(self.url(), json=body)
        assert res.status_code == 200, res.text
        messages: list[dict[str, Any]] = res.json()["messages"]
        return messages

    def seen(self, client: TestClient, after: int = 0) -> list[dict[str, Any]]:
        res = client.get(self.url(), params={"after": after})
        assert res.status_code == 200, res.text
        messages: list[dict[str, Any]] = res.json()["messages"]
        return messages


def new_chat(engine: Engine, *, now: datetime, market: str = "GB", hcp: dict[str, Any] | None = None) -> HcpChat:
    """A web chat conversation (optionally of a known HCP) created straight in the database."""
    with unit_of_work(factory(engine)) as s:
        conv, token = conversations.create_webchat(s, now=now, market=market)
        if hcp is not None:
            row = Hcp(created_at=now, **hcp)
            s.add(row)
            s.flush()
            conv.hcp_id = row.id
        return HcpChat(token, conv.id)


def queue_handoff(engine: Engine, chat: HcpChat, *, target: str = "rep", now: datetime,
                  said: list[str] | None = None) -> str:
    """The HCP's messages (if any) and an open handoff; returns the handoff id."""
    with unit_of_work(factory(engine)) as s:
        conv = s.get(Conversation, chat.conversation_id)
        assert conv is not None
        for text in said or []:
            mark_screened(s, conversations.persist_inbound(s, conv, text=text, now=now).message)
        return open_handoff(s, conv, target=target, reason="hcp_request", now=now).id


@dataclass
class Canaries:
    ae: str
    inquiry: str
    inquiry_reference: str


def add_medical_messages(engine: Engine, chat: HcpChat, *, now: datetime) -> Canaries:
    """An adverse event and an off-label question in the conversation, captured the way the safety
    screen captures them; each carries a unique canary string."""
    ae = f"CANARY-AE-{uuid.uuid4().hex[:12]}"
    mi = f"CANARY-MI-{uuid.uuid4().hex[:12]}"
    with unit_of_work(factory(engine)) as s:
        conv = s.get(Conversation, chat.conversation_id)
        assert conv is not None
        m1 = conversations.persist_inbound(s, conv, text=f"my patient had a seizure after cardiovex {ae}",
                                           now=now).message
        apply(s, conversation=conv, message=m1,
              result=ScreenResult(adverse_event=True, ae_categories=("side_effect",), ae_score=0.99,
                                  products=("cardiovex",), serious=True, serious_terms=("seizure",)), now=now)
        m2 = conversations.persist_inbound(s, conv, text=f"can I give cardiovex to a 9 year old {mi}",
                                           now=now).message
        out = apply(s, conversation=conv, message=m2,
                    result=ScreenResult(off_label=True, products=("cardiovex",), off_label_reasons=("population",)),
                    now=now)
        for stored in (m1, m2):
            mark_screened(s, stored)
        from api.safety.models import MedicalInquiry

        inquiry = s.get(MedicalInquiry, out.medical_inquiry_id)
        assert inquiry is not None
        return Canaries(ae, mi, inquiry.reference)


def mark_screened(session: Session, msg: Message) -> None:
    """As the worker leaves a message whose turn finished (staff views show screened messages only)."""
    inbox = session.execute(select(InboxItem).where(InboxItem.message_id == msg.id)).scalar_one()
    inbox.status = InboxStatus.done
    inbox.processed_at = msg.created_at
    msg.status = MessageStatus.processed
    msg.processed_at = msg.created_at
    session.flush()


AppMaker = Callable[..., TestClient]


@pytest.fixture()
def clocked_app(open_app: Callable[..., TestClient], settings: Settings) -> AppMaker:
    """``make(clock, rasa=FakeRasa(), **settings overrides)`` → a client of an app on that clock."""

    def make(clock: FakeClock, rasa: FakeRasa | None = None, **overrides: Any) -> TestClient:
        return open_app(settings.model_copy(update=overrides) if overrides else settings, rasa, clock=clock,
                        follow_redirects=False)

    return make


def staff_client(make: AppMaker, clock: FakeClock, account: StaffAccount) -> tuple[TestClient, str]:
    client = make(clock)
    return client, login(client, account)


def post_json(client: TestClient, url: str, csrf: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(url, headers={"accept": "application/json", "x-csrf-token": csrf}, json=body or {})


def write_library(tmp: Path, items: list[dict[str, Any]]) -> Path:
    path = tmp / f"lib-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return path
