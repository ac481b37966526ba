"""An adverse-event turn is one good turn: one message that thanks and asks for what is missing, then
the answer to a question the HCP asked in the same message; never a filler or a "didn't get that"."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.clock import FakeClock
from api.content import make_send_gate
from api.conversations import ae_turn
from api.conversations import service as conversations
from api.conversations.models import Conversation, Message
from api.db import unit_of_work
from api.outbox import WebchatSender
from api.pipeline.turn import TurnProcessor
from api.rasa.actions.fallback import NOT_UNDERSTOOD
from api.rasa.client import RasaClient
from api.safety.screen import ScreenResult
from tests.consoles.review_fixtures import ScriptedScreen

FILLER = "Is there anything else I can help you with in the meantime?"
NO_ANSWER = "I don't have approved information that answers this, and I won't guess."


@dataclass
class ScriptedRasa:
    """Answers like the real bot does: a filler for the AE intent, an escalation for a question, and a
    "didn't get that" (a failed turn) for a narrative it cannot place."""

    mode: str = "ok"
    seen: list[str] = field(default_factory=list)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/status":
            return httpx.Response(200, json={"model_id": "fake"})
        text = str(json.loads(request.content)["message"])
        self.seen.append(text)
        if self.mode == "error":
            return httpx.Response(500, text="down")
        if text == ae_turn.AE_INTENT:
            body: list[dict[str, Any]] = [{"recipient_id": "x", "text": FILLER}]
        elif text.endswith("?"):
            body = [{"recipient_id": "x", "custom": {"text": NO_ANSWER, "escalated": True,
                                                     "buttons": [{"title": "Ask Medical Information",
                                                                  "payload": "/ask_medical_information"}]}}]
        else:
            body = [{"recipient_id": "x", "custom": {"text": NOT_UNDERSTOOD, "turn_failed": True}}]
        return httpx.Response(200, json=body)


class Chat:
    def __init__(self, engine: Engine, rasa: ScriptedRasa) -> None:
        self.factory = sessionmaker(bind=engine, expire_on_commit=False)
        self.clock = FakeClock()
        self.screen = ScriptedScreen()
        self.rasa = rasa
        self.processor = TurnProcessor(
            session_factory=self.factory, rasa=RasaClient("http://rasa", "t", 5.0,
                                                          transport=httpx.MockTransport(rasa.handler)),
            clock=self.clock, senders={"webchat": WebchatSender()}, gate=make_send_gate("GB"),
            default_market="GB", safety_hook=self.screen)
        with unit_of_work(self.factory) as s:
            conv, _ = conversations.create_webchat(s, now=self.clock.now(), market="GB")
            self.conversation_id = conv.id

    def say(self, text: str, finding: ScreenResult | None = None) -> list[str]:
        if finding is not None:
            self.screen.script[text] = finding
        self.clock.advance(minutes=1)
        with unit_of_work(self.factory) as s:
            conv = s.get_one(Conversation, self.conversation_id)
            inbox_id = conversations.persist_inbound(s, conv, text=text, now=self.clock.now()).inbox.id
        result = asyncio.run(self.processor.process(inbox_id))
        with self.factory() as s:
            return [s.get_one(Message, i).body for i in result.reply_ids]

    def failed_turns(self) -> int:
        with Session(self.factory.kw["bind"]) as s:
            return s.get_one(Conversation, self.conversation_id).failed_turns


def _rash(products: tuple[str, ...] = ("respizan",)) -> ScreenResult:
    return ScreenResult(adverse_event=True, ae_categories=("side_effect",), products=products, ae_score=0.96)


@pytest.fixture()
def rasa() -> ScriptedRasa:
    return ScriptedRasa()


@pytest.fixture()
def chat(engine: Engine, rasa: ScriptedRasa) -> Chat:
    return Chat(engine, rasa)


def test_a_report_alone_gets_one_message_that_thanks_and_asks_for_what_is_missing(chat: Chat) -> None:
    replies = chat.say("one of my patients came out in hives the week she started respizan", _rash())
    assert len(replies) == 1
    (only,) = replies
    assert only.startswith("Thank you for telling us.") and "To complete the report" in only
    assert FILLER not in only and NOT_UNDERSTOOD not in only
    assert chat.rasa.seen == [ae_turn.AE_INTENT]  # the narrative itself is not Rasa's to misread


def test_a_question_inside_the_report_is_answered_after_the_acknowledgement(chat: Chat) -> None:
    text = "A man on respizan got a bad headache after the 2nd injection. Should the next dose be delayed?"
    replies = chat.say(text, _rash())
    assert len(replies) == 2
    assert replies[0].startswith("Thank you for telling us.") and "To complete the report" in replies[0]
    assert replies[1].startswith(NO_ANSWER)
    assert chat.rasa.seen == ["Should the next dose be delayed (respizan)?"]


def test_a_question_clause_in_the_same_sentence_is_the_one_rasa_gets() -> None:
    asked = ae_turn.embedded_question("pt developed swollen ankles on cardiovex, can she keep taking it?")
    assert asked == "can she keep taking it (cardiovex)?"
    assert ae_turn.embedded_question("Patient fainted after the first glucorel dose.") is None
    assert ae_turn.embedded_question("my pt on glucorell had vomiting. what is the usual onset of nausea with glucorel?"
                                     ) == "what is the usual onset of nausea with glucorel?"


def test_a_detail_for_the_open_report_is_thanked_not_misunderstood(chat: Chat) -> None:
    chat.say("one of my patients came out in hives the week she started respizan", _rash())
    replies = chat.say("Nadia Quist here, reach me at n.quist@example.org")
    assert replies == [ae_turn.FOLLOW_UP_THANKS]
    assert chat.failed_turns() == 0


def test_a_report_never_counts_as_a_failed_turn(chat: Chat) -> None:
    with unit_of_work(chat.factory) as s:  # one miss already (the real fallback action counts it)
        s.get_one(Conversation, chat.conversation_id).failed_turns = 1
    chat.say("one of my patients came out in hives the week she started respizan", _rash())
    assert chat.failed_turns() == 0


@pytest.mark.parametrize("with_question", [False, True])
def test_with_rasa_down_the_acknowledgement_stands_alone_or_with_an_honest_note(engine: Engine,
                                                                                 with_question: bool) -> None:
    chat = Chat(engine, ScriptedRasa(mode="error"))
    text = "after velostatin my patient had muscle cramps" + (". is that listed as a known effect?" if with_question
                                                               else "")
    replies = chat.say(text, _rash(("cardiovex",)))
    assert replies[0].startswith("Thank you for telling us.") and "To complete the report" in replies[0]
    assert not any("can't process that" in r for r in replies)
    assert replies[1:] == ([ae_turn.QUESTION_WHILE_RASA_DOWN] if with_question else [])
