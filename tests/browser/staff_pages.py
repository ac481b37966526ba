"""Helpers for console browser tests: staff accounts, logging in, and the web chat side."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.conversations.models import Conversation, Direction, Message
from api.db import unit_of_work
from api.handoffs.models import Handoff
from api.handoffs.service import open_handoff
from api.staff import service as staff_service
from tests.conftest import REPO

Page = Any
DOCS_SCREENS = REPO / "docs" / "screens"
PASSWORD = "a long demo password for the browser"


def make_staff(engine: Engine, role: str, name: str) -> str:
    email = f"pw-{role}-{uuid.uuid4().hex[:8]}@halcyon.example"
    with unit_of_work(sessionmaker(bind=engine)) as s:
        staff_service.create(s, email=email, password=PASSWORD, roles=[role], name=name, now=datetime.now(UTC))
    return email


def log_in(page: Page, base: str, email: str, next_path: str) -> None:
    page.goto(f"{base}/console/login?next={next_path}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}{next_path}")


def open_chat(page: Page, base: str) -> None:
    page.goto(base + "/")
    expect(page.locator("html[data-webchat-ready=true]")).to_have_count(1)


def chat(page: Page, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-input").press("Enter")


def hcp_says(page: Page, base: str, engine: Engine, text: str, marker: str) -> tuple[str, int]:
    """Open the web chat, send ``text`` (which carries ``marker``), wait for the bot's first reply:
    (conversation id, message id)."""
    open_chat(page, base)
    chat(page, text)
    expect(page.get_by_test_id("message-bot").first).to_be_visible()
    return conversation_of(engine, marker)


def hand_to_rep(engine: Engine, conversation_id: str) -> Handoff:
    """Queue the conversation for the rep team, as the bot does when the HCP asks for a person."""
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        conv = s.get(Conversation, conversation_id)
        assert conv is not None
        return open_handoff(s, conv, target="rep", reason="hcp_request", now=datetime.now(UTC))


def conversation_of(engine: Engine, marker: str) -> tuple[str, int]:
    """(conversation id, message id) of the inbound message containing ``marker``."""
    with Session(engine) as s:
        row = s.execute(select(Message.conversation_id, Message.id).where(
            Message.direction == Direction.inbound, Message.body.contains(marker))).one()
        return str(row[0]), int(row[1])
