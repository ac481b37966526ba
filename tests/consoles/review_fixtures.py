"""Shared by the Medical review and Safety console tests: apps whose safety screen is scripted.

HCP messages go the real way — POST to the web chat, the worker, ``api.safety.service.apply`` —
only the classifier is replaced by a script (message text → ScreenResult), so a test decides
what the screen "found" without training the model. Every app in a test shares one FakeClock.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.clock import FakeClock
from api.conversations import service as conversations
from api.conversations.models import Conversation, Message
from api.db import unit_of_work
from api.pipeline.turn import SafetyOutcomeLike
from api.safety.models import AdverseEvent, MedicalInquiry
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.settings import Settings
from api.staff.models import StaffRole
from tests.consoles.conftest import StaffAccount, login
from tests.fakes.rasa import FakeRasa

OTHER_THAN: dict[str, list[str]] = {str(role): [str(r) for r in StaffRole if r != role] for role in StaffRole}


@dataclass
class ScriptedScreen:
    """The real safety hook with a scripted classifier: exact message text → what the screen finds."""

    script: dict[str, ScreenResult] = field(default_factory=dict)

    def __call__(self, session: Session, conv: Conversation, msg: Message, now: datetime) -> SafetyOutcomeLike:
        # Unscripted text: nothing found, but the findings still go through ``apply`` (follow-ups link).
        result = self.script.get(msg.body, ScreenResult())
        outcome: SafetyOutcomeLike = apply(session, conversation=conv, message=msg, result=result, now=now)
        return outcome


@dataclass
class Chat:
    """One HCP's web chat session."""

    client: TestClient
    token: str
    conversation_id: str

    def say(self, text: str) -> list[dict[str, Any]]:
        res = self.client.post(f"/api/webchat/sessions/{self.token}/messages", json={"text": text})
        assert res.status_code == 200, res.text
        replies: list[dict[str, Any]] = res.json()["messages"]
        return replies

    def messages(self) -> list[dict[str, Any]]:
        res = self.client.get(f"/api/webchat/sessions/{self.token}/messages")
        assert res.status_code == 200, res.text
        found: list[dict[str, Any]] = res.json()["messages"]
        return found


@dataclass
class ReviewWorld:
    engine: Engine
    settings: Settings
    clock: FakeClock
    screen: ScriptedScreen
    make_client: Callable[[], TestClient]
    make_staff: Callable[..., StaffAccount]

    @property
    def factory(self) -> sessionmaker[Session]:
        return sessionmaker(bind=self.engine, expire_on_commit=False)

    def staff_client(self, *roles: str) -> tuple[TestClient, StaffAccount, str]:
        account = self.make_staff(*roles)
        client = self.make_client()
        return client, account, login(client, account)

    def chat(self, client: TestClient | None = None) -> Chat:
        client = client or self.make_client()
        res = client.post("/api/webchat/sessions")
        assert res.status_code == 201, res.text
        token = res.json()["session_id"]
        with self.factory() as s:
            conv = conversations.get_by_session_token(s, token)
            return Chat(client, token, conv.id)

    def inquiry_for(self, conversation_id: str) -> MedicalInquiry:
        with self.factory() as s:
            found = s.execute(select(MedicalInquiry).where(MedicalInquiry.conversation_id == conversation_id)
                              .order_by(MedicalInquiry.created_at.desc())).scalars().first()
            assert found is not None
            return found

    def inquiry(self, inquiry_id: str) -> MedicalInquiry:
        with self.factory() as s:
            found = s.get(MedicalInquiry, inquiry_id)
            assert found is not None
            return found

    def case_for(self, conversation_id: str) -> AdverseEvent:
        with self.factory() as s:
            found = s.execute(select(AdverseEvent).where(AdverseEvent.conversation_id == conversation_id)
                              .order_by(AdverseEvent.created_at.desc())).scalars().first()
            assert found is not None
            return found

    def case(self, case_id: str) -> AdverseEvent:
        with self.factory() as s:
            found = s.get(AdverseEvent, case_id)
            assert found is not None
            return found

    def messages_of(self, conversation_id: str) -> list[Message]:
        with self.factory() as s:
            return list(s.execute(select(Message).where(Message.conversation_id == conversation_id)
                                  .order_by(Message.id)).scalars())

    def load_content(self, tmp_path: Path, **over: Any) -> dict[str, Any]:
        """One approved library item with a unique id (the test database is shared)."""
        from knowledge.service import load_library

        item: dict[str, Any] = {
            "id": f"TST-{uuid.uuid4().hex[:10]}", "version": 1, "title": "Cardiovex storage", "product": "cardiovex",
            "kind": "faq", "audience": ["hcp"], "markets": ["US", "GB"], "status": "approved",
            "approval_code": f"APP-{uuid.uuid4().hex[:8]}", "approved_at": "2026-01-01", "expires_at": "2027-12-31",
            "questions": ["How should Cardiovex be stored?"],
            "body": f"Store Cardiovex tablets below 30°C in the original blister pack. {uuid.uuid4().hex[:6]}",
        }
        item.update(over)
        path = tmp_path / f"{item['id']}.jsonl"
        path.write_text(json.dumps(item) + "\n", encoding="utf-8")
        with unit_of_work(self.factory) as s:
            load_library(s, path, actor="tester")
        return item


def review_world(engine: Engine, settings: Settings,
                 make_staff: Callable[..., StaffAccount]) -> Iterator[ReviewWorld]:
    """Body of each test module's ``world`` fixture: apps on the test database, one FakeClock."""
    clock = FakeClock()
    screen = ScriptedScreen()
    clients: list[TestClient] = []

    def make_client() -> TestClient:
        app = create_app(settings, engine=engine, clock=clock, safety_hook=screen,
                         rasa_transport=FakeRasa().transport(), warm_knowledge=False)
        client = TestClient(app, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return client

    yield ReviewWorld(engine, settings, clock, screen, make_client, make_staff)
    for c in clients:
        c.__exit__(None, None, None)


def unique() -> str:
    """A random tag for message texts: letters only, since digit runs read as phone numbers or ages to the
    safety rules (and would change the criteria a message establishes)."""
    return "".join(random.choices(string.ascii_lowercase, k=14))


def canary() -> str:
    return f"CANARY-{unique()}"
