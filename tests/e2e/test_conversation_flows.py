"""The conversation flows end to end: real Rasa 3.6 server, real api, real safety screen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from api.app import create_app
from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.db import make_session_factory, unit_of_work
from api.requests.models import ServiceRequest
from api.safety.models import AdverseEvent, MedicalInquiry
from api.settings import Settings
from feedback.models import PreferenceChange
from tests.conftest import LiveServer, LiveStack, free_port

pytestmark = pytest.mark.rasa


@pytest.fixture(scope="module")
def demo_library(live_stack: LiveStack, engine: Engine) -> Iterator[None]:
    """The shipped demo library in the shared test database for this module, removed afterwards."""
    from knowledge.models import ContentItem, ContentProduct, ContentVersion
    from knowledge.service import list_items, load_library

    factory = make_session_factory(engine)
    with unit_of_work(factory) as s:
        loaded_here = not list_items(s)
        if loaded_here:
            load_library(s, live_stack.settings.library_path, actor="e2e-test")
    # Index the library now (same process as the live api), not inside a Rasa action's deadline.
    from knowledge.service import get_knowledge_base

    with factory() as s:
        get_knowledge_base(live_stack.settings.resolved_index_dir).warm_up(s)
    yield
    if loaded_here:
        with unit_of_work(factory) as s:
            s.execute(delete(ContentVersion))
            s.execute(delete(ContentItem))
            s.execute(delete(ContentProduct))


class Chat:
    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=60)
        self.sid = self.client.post("/api/webchat/sessions").json()["session_id"]

    def say(self, text: str, payload: str | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"text": text}
        if payload is not None:
            body["payload"] = payload
        r = self.client.post(f"/api/webchat/sessions/{self.sid}/messages", json=body)
        assert r.status_code == 200, r.text
        messages: list[dict[str, Any]] = r.json()["messages"]
        return messages

    def conversation(self, session: Session) -> Conversation:
        return conversations.get_by_session_token(session, self.sid)


def _texts(messages: list[dict[str, Any]]) -> str:
    return " || ".join(str(m["text"]) for m in messages)


@pytest.mark.usefixtures("demo_library")
def test_a_product_question_is_answered_verbatim_with_its_approval_code(live_stack: LiveStack) -> None:
    chat = Chat(live_stack.api_url)
    replies = chat.say("what is the recommended dose of cardiovex?")
    answer = next((m for m in replies if m["approval_code"]), None)
    assert answer is not None, replies
    assert answer["approval_code"] == "HAL-CVX-001-INT-2601"
    assert answer["text"].startswith("The recommended starting dose of Cardiovex (velostatin) is 10 mg once daily.")
    assert [b["title"] for b in answer["buttons"]] == ["Helpful", "Not helpful", "Talk to someone"]


@pytest.mark.usefixtures("demo_library")
def test_an_unanswerable_question_is_escalated_to_medical_information(live_stack: LiveStack,
                                                                      engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    question = "what is the efficacy data for respizan in smokers"
    first = chat.say(question)
    assert "won't guess" in _texts(first)
    assert any(b["payload"] == "/ask_medical_information" for m in first for b in m["buttons"])
    second = chat.say("Ask Medical Information", payload="/ask_medical_information")
    reply = _texts(second)
    assert "Medical Information team (reference MI-" in reply and "working days" in reply
    with Session(engine) as s:
        conv = chat.conversation(s)
        inquiry = s.execute(select(MedicalInquiry).where(MedicalInquiry.conversation_id == conv.id)).scalar_one()
        assert inquiry.text == question and inquiry.reference in reply


def test_a_samples_request_creates_a_service_request_with_reference_and_sla(live_stack: LiveStack,
                                                                            engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    assert "How many sample packs" in _texts(chat.say("I'd like some samples of cardiovex please"))
    assert "Where should we deliver" in _texts(chat.say("3 boxes"))
    summary = _texts(chat.say("12 Harley Street, London W1G 9QY"))
    assert "Please check your sample request" in summary
    assert "Cardiovex (velostatin)" in summary and "3 packs" in summary and "12 Harley Street" in summary
    with Session(engine) as s:   # nothing is created before the HCP confirms
        conv = chat.conversation(s)
        assert s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).first() is None
    done = chat.say("Confirm", payload="/affirm")
    reply = _texts(done)
    assert "sample request is recorded (reference SR-" in reply and "will follow up by" in reply
    with Session(engine) as s:
        conv = chat.conversation(s)
        row = s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).scalar_one()
        assert row.kind == "samples" and row.product == "cardiovex" and row.reference in reply
        assert row.details["sample_quantity"] == 3
        assert row.details["delivery_address"] == "12 Harley Street, London W1G 9QY"
    # CSAT is not asked at submission: staff resolving the request asks it (tests/consoles)
    assert not any(b["payload"].startswith("/give_score") for m in done for b in m["buttons"])


def test_a_form_keeps_what_was_said_refuses_junk_and_resumes_after_a_preference(live_stack: LiveStack,
                                                                                engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    first = _texts(chat.say("could you post 2 cartons of zelvamab samples to my clinic"))
    assert "Which product" not in first and "How many" not in first     # both were in the request
    assert "Where should we deliver" in first
    aside = _texts(chat.say("by the way, send things by email, not WhatsApp"))
    assert "email instead of WhatsApp" in aside and "Where should we deliver" in aside
    junk = _texts(chat.say("3"))
    assert "doesn't look like a delivery address" in junk and "Where should we deliver" in junk
    summary = _texts(chat.say("Ward 5, Riverside Infirmary, 10 Bank Street, Derby DE1 1AA"))
    assert "Respizan (zelvamab)" in summary and "2 packs" in summary
    fixed = _texts(chat.say("make it 4 packs"))
    assert "4 packs" in fixed and "Please check your sample request" in fixed
    with Session(engine) as s:
        conv = chat.conversation(s)
        assert s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).first() is None
    assert "reference SR-" in _texts(chat.say("Confirm", payload="/affirm"))
    with Session(engine) as s:
        conv = chat.conversation(s)
        row = s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).scalar_one()
        assert row.product == "respizan" and row.details["sample_quantity"] == 4
        assert row.details["delivery_address"] == "Ward 5, Riverside Infirmary, 10 Bank Street, Derby DE1 1AA"
        change = s.execute(select(PreferenceChange).where(PreferenceChange.conversation_id == conv.id)).scalar_one()
        assert (change.name, change.new_value) == ("channel", "email")


@pytest.mark.usefixtures("demo_library")
def test_a_product_question_in_the_middle_of_a_form_is_answered_and_the_form_resumes(live_stack: LiveStack,
                                                                                     engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    assert "How many sample packs" in _texts(chat.say("samples of cardiovex please"))
    aside = chat.say("what is the recommended dose of cardiovex?")
    assert any(m["approval_code"] == "HAL-CVX-001-INT-2601" for m in aside), aside
    assert "How many sample packs" in _texts(aside)      # the form asks its question again
    assert "Where should we deliver" in _texts(chat.say("2"))
    with Session(engine) as s:
        conv = chat.conversation(s)
        assert s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).first() is None


def test_edit_at_the_summary_asks_again_and_creates_nothing(live_stack: LiveStack, engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    chat.say("I'd like some samples of glucorel please")
    chat.say("one pack")
    assert "Please check your" in _texts(chat.say("Elm Lodge Surgery, 3 Park Road, Leeds LS6 2AB"))
    again = _texts(chat.say("Edit", payload="/deny"))
    assert "go through it again" in again and "Which product" in again
    with Session(engine) as s:
        conv = chat.conversation(s)
        assert s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).first() is None


def test_a_preference_change_is_stored_with_history_and_acknowledged(live_stack: LiveStack,
                                                                     engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    reply = _texts(chat.say("once a month is enough"))
    assert "updated your preferences (frequency: at most once a month)" in reply
    with Session(engine) as s:
        conv = chat.conversation(s)
        change = s.execute(select(PreferenceChange).where(PreferenceChange.conversation_id == conv.id)
                           ).scalar_one()
        assert (change.name, change.old_value, change.new_value) == ("frequency", None, "monthly")
        assert change.message_id is not None


def test_a_preference_is_echoed_the_right_way_round_and_can_be_undone(live_stack: LiveStack,
                                                                      engine: Engine) -> None:
    chat = Chat(live_stack.api_url)
    said = chat.say("please use SMS for me rather than WhatsApp")
    reply = _texts(said)
    assert "channel: SMS instead of WhatsApp" in reply
    assert any(b["payload"] == "/undo_preference" for m in said for b in m["buttons"])
    assert "Undone" in _texts(chat.say("Undo", payload="/undo_preference"))
    with Session(engine) as s:
        conv = chat.conversation(s)
        changes = s.execute(select(PreferenceChange).where(PreferenceChange.conversation_id == conv.id)
                            .order_by(PreferenceChange.id)).scalars().all()
        assert [(c.name, c.old_value, c.new_value, c.source) for c in changes] == [
            ("channel", None, "sms", "bot"), ("channel", "sms", "", "undo")]


def test_out_of_scope_twice_in_a_row_offers_a_person(live_stack: LiveStack) -> None:
    chat = Chat(live_stack.api_url)
    assert "outside what I can help with" in _texts(chat.say("what's the weather like in Paris tomorrow"))
    second = chat.say("book me a table at an italian restaurant")
    assert any(b["payload"] == "/request_human" for m in second for b in m["buttons"])


def test_an_adverse_event_is_captured_while_rasa_is_stopped(engine: Engine, settings: Settings) -> None:
    # settings.rasa_url points at a port nothing listens on: Rasa is down.
    server = LiveServer(create_app(settings.model_copy(update={"rasa_timeout": 1.0}), engine=engine,
                                   warm_knowledge=False), free_port()).start()
    try:
        chat = Chat(server.url)
        replies = chat.say("my patient developed a rash after the second dose of cardiovex")
        assert "reference AE-" in _texts(replies)
        with Session(engine) as s:
            conv = chat.conversation(s)
            case = s.execute(select(AdverseEvent).where(AdverseEvent.conversation_id == conv.id)).scalar_one()
            assert case.raw_text.startswith("my patient developed a rash")
    finally:
        server.stop()


def test_a_verified_hcp_asking_to_verify_again_is_told_so_before_any_question(live_stack: LiveStack,
                                                                            engine: Engine) -> None:
    from datetime import UTC, datetime

    from api.audit.models import AuditEvent
    from api.hcps.models import Hcp

    verified, newcomer = Chat(live_stack.api_url), Chat(live_stack.api_url)
    verified.say("hello")
    with Session(engine) as s:
        hcp = Hcp(name="Dr Ada Jones", verification_status="verified", created_at=datetime.now(UTC))
        s.add(hcp)
        s.flush()
        verified.conversation(s).hcp_id = hcp.id
        s.commit()
        hcp_id = hcp.id
    reply = _texts(verified.say("Verify me", payload="/verify_identity"))
    assert "already verified, Dr Ada Jones" in reply
    assert "I need to verify you" not in reply  # the form never started
    # ... so the next message is an ordinary turn, not taken as a name
    assert "I need to verify you" not in _texts(verified.say("thanks"))
    with Session(engine) as s:
        assert s.get(Hcp, hcp_id).verification_status == "verified"
        events = s.execute(select(AuditEvent.action).where(AuditEvent.subject_id == hcp_id)).scalars().all()
        assert "hcp.verification_repeated" in events
    # Someone not verified is asked the questions.
    assert "I need to verify you" in _texts(newcomer.say("Verify me", payload="/verify_identity"))
