"""A first-time WhatsApp number: the bot answers its first message and starts collecting name,
licence number and country (run by the api), while the safety screen, opt-out and a request for
a person always come first and public questions keep being answered."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import sessionmaker

from api.audit.models import AuditEvent
from api.channels.whatsapp import service as wa
from api.clock import FakeClock
from api.content import make_send_gate
from api.conversations import copy
from api.conversations.models import Conversation, InboxItem, Message
from api.db import unit_of_work
from api.handoffs.service import open_handoff
from api.hcps import intake
from api.hcps.models import ChannelIdentity, Hcp
from api.hcps.verification import list_pending
from api.outbox import WebchatSender
from api.pipeline.turn import TurnProcessor
from api.rasa.actions.submit_verification import REPLY
from api.rasa.client import RasaClient
from api.safety.screen import ScreenResult
from tests.channels.conftest import new_number
from tests.consoles.review_fixtures import ScriptedScreen
from tests.fakes.rasa import FakeRasa


@dataclass
class HandoffRasa(FakeRasa):
    """The fake Rasa, except that asking for a person opens a handoff (as action_request_handoff does)."""

    factory: Any = None

    def reply_for(self, text: str) -> list[dict[str, Any]]:
        # A Rasa form asking for its slots marks each question with ``asks`` (ask_form_slot).
        if "samples" in text:
            return [{"recipient_id": "x", "custom": {"text": "How many sample packs would you like?",
                                                     "buttons": [], "asks": "sample_quantity"}}]
        if text.startswith("how do I keep"):  # an answer for the public, then the hint to verify
            return [{"recipient_id": "x", "text": "Keep it in the fridge."},
                    {"recipient_id": "x", "custom": {"text": copy.VERIFY_HINT, "buttons": []}}]
        if text == "3 boxes":
            return [{"recipient_id": "x", "custom": {"text": "Where should we deliver them?", "buttons": [],
                                                     "asks": "delivery_address"}}]
        return super().reply_for(text)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/status":
            body = json.loads(request.content)
            if str(body["message"]).startswith("/request_human"):
                with unit_of_work(self.factory) as s:
                    conv = s.get(Conversation, body["sender"])
                    assert conv is not None
                    open_handoff(s, conv, target="rep", reason="hcp_request", now=FakeClock().now())
        return await super().handler(request)


class Phone:
    def __init__(self, engine: Engine) -> None:
        self.factory = sessionmaker(bind=engine, expire_on_commit=False)
        self.clock = FakeClock()
        self.screen = ScriptedScreen()
        self.rasa = HandoffRasa(factory=self.factory)
        self.number = new_number()
        self.processor = TurnProcessor(
            session_factory=self.factory, rasa=RasaClient("http://rasa", "t", 5.0, transport=self.rasa.transport()),
            clock=self.clock, senders={"webchat": WebchatSender()}, gate=make_send_gate("US"),
            default_market="US", safety_hook=self.screen)

    def say(self, text: str, payload: str | None = None) -> list[str]:
        """Send one WhatsApp message and run its turn; returns the texts the bot queued in reply."""
        self.clock.advance(minutes=1)
        params = {"MessageSid": f"SM{uuid.uuid4().hex}", "From": self.number, "Body": text}
        if payload:
            params["ButtonPayload"] = payload
        with unit_of_work(self.factory) as s:
            res = wa.record_inbound(s, wa.InboundForm.parse(params), now=self.clock.now(), market="US")
            inbox_id = s.execute(select(InboxItem.id).where(InboxItem.message_id == res.message_id)).scalar_one()
        result = asyncio.run(self.processor.process(inbox_id))
        with self.factory() as s:
            return [s.get_one(Message, i).body for i in result.reply_ids]

    def conversation(self) -> Conversation:
        with self.factory() as s:
            conv = s.get(Conversation, wa.conversation_for(s, self.number, now=self.clock.now(), market="US").id)
            assert conv is not None
            return conv

    def hcp(self) -> Hcp | None:
        conv = self.conversation()
        with self.factory() as s:
            return s.get(Hcp, conv.hcp_id) if conv.hcp_id else None

    def audit(self, action: str) -> int:
        conv = self.conversation()
        with self.factory() as s:
            return int(s.execute(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == action, AuditEvent.subject_id.in_([conv.id, conv.hcp_id or "-"]))).scalar_one())


@pytest.fixture()
def phone(engine: Engine) -> Iterator[Phone]:
    yield Phone(engine)


def _has(texts: list[str], fragment: str) -> bool:
    return any(fragment in t for t in texts)


def test_the_first_message_is_answered_then_the_intake_collects_name_licence_and_country(phone: Phone) -> None:
    first = phone.say("Hello")
    assert first[0] == "echo: Hello"  # Rasa answered the message itself
    assert first[-1].startswith(intake.INTRO) and first[-1].endswith("What is your full name?")
    assert phone.conversation().verification_intake == "collecting" and phone.audit("hcp.verification_started") == 1

    calls = len(phone.rasa.calls)
    assert phone.say("Dr Jane Okafor") == [intake.QUESTIONS["licence_number"]]
    assert len(phone.rasa.calls) == calls  # an answer is the api's, Rasa is not asked
    hcp = phone.hcp()
    assert hcp is not None and hcp.name == "Dr Jane Okafor" and hcp.verification_status == "collecting"
    assert phone.conversation().audience == "public"

    # A public question in between is answered, and the pending question repeated (once).
    asked = phone.say("What is the storage temperature for Cardiovex?")
    assert asked[0].startswith("echo:") and asked[-1] == intake.REMINDER.format(
        question=intake.QUESTIONS["licence_number"])
    again = phone.say("And the pack sizes?")
    assert again == ["echo: And the pack sizes?"]

    # Not sent right after our question: Rasa's, with the reminder (which is our question again).
    assert phone.say("ok") == ["echo: ok", intake.REMINDER.format(question=intake.QUESTIONS["licence_number"])]
    assert phone.say("12") == [intake.NOT_UNDERSTOOD["licence_number"]]
    assert phone.say("GMC 7654321") == [intake.QUESTIONS["country"]]
    assert phone.say("Atlantis") == [intake.NOT_UNDERSTOOD["country"]]
    done = phone.say("United Kingdom")
    assert done == [REPLY.format(name="Dr Jane Okafor", licence="GMC 7654321", country="GB")]
    hcp = phone.hcp()
    assert hcp is not None and (hcp.licence_id, hcp.country, hcp.verification_status) == ("GMC 7654321", "GB",
                                                                                          "pending")
    assert phone.conversation().verification_intake == "done"
    with phone.factory() as s:
        assert hcp.id in {p.hcp_id for p in list_pending(s)}
        bound = s.execute(select(ChannelIdentity).where(ChannelIdentity.address == phone.number)).scalar_one()
        assert bound.hcp_id == hcp.id
    assert phone.audit("hcp.verification_requested") == 1 and phone.audit("hcp.verification_answer") == 3
    # Later messages are ordinary turns: no more prompts.
    assert phone.say("thanks") == ["echo: thanks"]


def test_an_adverse_event_in_the_first_message_is_answered_first_and_the_intake_waits(phone: Phone) -> None:
    text = f"my patient had a rash after cardiovex {uuid.uuid4().hex[:6]}"
    phone.screen.script[text] = ScreenResult(adverse_event=True, ae_categories=("side_effect",),
                                             products=("cardiovex",), ae_score=0.97)
    replies = phone.say(text)
    assert replies[0].startswith("Thank you for telling us. This may be an adverse event")
    assert not _has(replies, intake.INTRO)
    assert phone.conversation().verification_intake is None
    # The next ordinary message starts it.
    assert _has(phone.say("ok thank you"), intake.INTRO)


def test_an_adverse_event_mid_intake_is_never_taken_as_an_answer(phone: Phone) -> None:
    phone.say("Hello")
    text = "Jane had a seizure"  # could pass for a name; the screen found an AE, so it is not one
    phone.screen.script[text] = ScreenResult(adverse_event=True, ae_categories=("side_effect",), ae_score=0.95)
    phone.say(text)
    assert phone.hcp() is None and phone.conversation().verification_intake == "collecting"


def test_stop_as_the_first_message_wins_and_starts_nothing(phone: Phone) -> None:
    phone.screen.script["STOP"] = ScreenResult(opt_out=True)
    replies = phone.say("STOP")
    assert not _has(replies, intake.INTRO) and phone.rasa.calls == []
    assert phone.conversation().verification_intake is None


def test_asking_for_a_person_first_hands_over_without_the_intake(phone: Phone) -> None:
    replies = phone.say("Talk to a person", payload="/request_human")
    assert not _has(replies, intake.INTRO)
    conv = phone.conversation()
    assert conv.state == "queued" and conv.verification_intake is None


def test_a_person_can_be_asked_for_mid_intake(phone: Phone) -> None:
    phone.say("Hello")
    replies = phone.say("Talk to a person", payload="/request_human")
    assert phone.rasa.calls[-1]["message"] == "/request_human"
    assert not _has(replies, "To finish verifying you") and phone.conversation().state == "queued"


def test_skip_stops_the_intake_for_good(phone: Phone) -> None:
    phone.say("Hi")
    assert phone.say("skip") == [intake.DECLINED_TEXT]
    assert phone.conversation().verification_intake == "declined" and phone.audit("hcp.verification_declined") == 1
    assert phone.say("Jane Smith") == ["echo: Jane Smith"]
    assert phone.hcp() is None


def test_verify_me_mid_intake_repeats_the_pending_question_instead_of_a_second_form(phone: Phone) -> None:
    phone.say("Hello")
    phone.say("Dr Ana Silva")
    calls = len(phone.rasa.calls)
    assert phone.say("verify me") == [intake.QUESTIONS["licence_number"]]
    assert phone.say("Verify now", payload="/verify_identity") == [intake.QUESTIONS["licence_number"]]
    assert len(phone.rasa.calls) == calls


def test_a_surname_that_is_also_a_word_for_a_human_is_taken_as_the_name_not_as_a_handoff(phone: Phone) -> None:
    phone.say("Hello")
    calls = len(phone.rasa.calls)
    assert phone.say("Greta Person") == [intake.QUESTIONS["licence_number"]]
    assert len(phone.rasa.calls) == calls  # the api's answer: Rasa never saw it
    hcp = phone.hcp()
    assert hcp is not None and hcp.name == "Greta Person"
    conv = phone.conversation()
    assert conv.state == "bot" and conv.verification_intake == "collecting"


def test_answering_the_name_question_with_a_plea_for_a_human_goes_to_rasa_not_into_the_form(phone: Phone) -> None:
    phone.say("Hello")
    phone.say("real person")
    assert phone.rasa.calls[-1]["message"] == "real person"  # Rasa's request_human → handoff
    assert phone.hcp() is None


@pytest.mark.parametrize(("text", "name"), [
    ("Dr Jane Okafor", True), ("María José García-López", True), ("O'Brien", True), ("hello", False),
    ("verify me", False), ("Cardiovex", False), ("12 Harley Street", False), ("what is the dose", False),
    ("a b c d e f g", False), ("", False), ("Marta Person", True), ("Dr Kofi Human", True), ("person", False),
    ("Human", False), ("real person", False), ("agent pls", False), ("a person", False),
])
def test_what_counts_as_a_name(text: str, name: bool) -> None:
    assert intake.looks_like_name(text) is name


@pytest.mark.parametrize(("text", "ok"), [
    ("GMC 7654321", True), ("7654321", True), ("LANR-123/45", True), ("not sure", False), ("12", False),
    ("my number is 12345 thanks a lot", False),
])
def test_what_counts_as_a_licence_number(text: str, ok: bool) -> None:
    assert intake.looks_like_licence(text) is ok


def test_web_chat_never_runs_the_intake(engine: Engine) -> None:
    from api.conversations import service as conversations

    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with factory() as s, s.begin():
        conv, _ = conversations.create_webchat(s, now=FakeClock().now(), market="GB")
        msg = Message(conversation_id=conv.id, direction="in", sender_type="hcp", channel="webchat", body="Hello",
                      status="received", created_at=FakeClock().now())
        s.add(msg)
        s.flush()
        assert intake.on_message(s, conv, msg, FakeClock().now()) == intake.IntakeTurn()
        s.rollback()



def test_a_rasa_form_asking_its_own_questions_comes_first_and_its_answers_are_not_taken(phone: Phone) -> None:
    first = phone.say("I would like samples please")
    assert first == ["How many sample packs would you like?"]  # the intake waits while a form asks
    assert phone.conversation().verification_intake is None
    assert phone.say("3 boxes") == ["Where should we deliver them?"]
    assert _has(phone.say("Thanks"), intake.INTRO)  # the form is done: now the intake starts
    phone.say("Dr Lee Chen")
    # Mid-intake, a form question's answer goes to Rasa, never into the licence number.
    assert phone.say("more samples please") == ["How many sample packs would you like?"]
    assert phone.say("3 boxes") == ["Where should we deliver them?"]
    hcp = phone.hcp()
    assert hcp is not None and hcp.licence_id is None
    reply = phone.say("Thank you")
    assert reply[-1] == intake.REMINDER.format(question=intake.QUESTIONS["licence_number"])
    assert phone.say("GMC 1234567") == [intake.QUESTIONS["country"]]


def test_the_intake_introduction_replaces_the_answers_hint_to_verify(phone: Phone) -> None:
    first = phone.say("how do I keep the pens once opened")
    assert first[0] == "Keep it in the fridge."
    assert not _has(first, copy.VERIFY_HINT)  # said once, by the introduction that asks the first question
    assert first[-1].startswith(intake.INTRO) and len(first) == 2
