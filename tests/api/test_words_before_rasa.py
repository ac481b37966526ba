"""What the turn hands Rasa in place of the typed words: the fallback intent for a message of no known
word, the handoff intent for a plain ask to be put through to Medical Information or an MSL — and
neither for an answer to a question the bot had just asked."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.app import ScreenHook
from api.conversations import gibberish
from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.db import unit_of_work
from api.handoffs import routing
from api.hcps import intake
from api.safety.screen import ScreenContext, ScreenResult
from api.safety.service import SafetyOutcome, apply
from tests.api.test_ae_turn import Chat, ScriptedRasa


class NothingFound:
    """A screen that finds nothing but, like the real one, is told what the bot had just asked."""

    def __init__(self) -> None:
        self.contexts: list[ScreenContext | None] = []

    def screen(self, text: str, context: ScreenContext | None = None) -> ScreenResult:
        self.contexts.append(context)
        return ScreenResult()

    def ready(self) -> bool:
        return True


def _chat(engine: Engine) -> Chat:
    chat = Chat(engine, ScriptedRasa())
    chat.processor.safety_hook = ScreenHook(NothingFound(), apply)  # type: ignore[arg-type]
    return chat


def _bot_asked(chat: Chat, question: str) -> None:
    with unit_of_work(chat.factory) as s:
        conv = s.get_one(Conversation, chat.conversation_id)
        conversations.add_outbound(s, conv, text=question, now=chat.clock.now())


@pytest.mark.parametrize("words", ["qwzx plimb vrrk", "xxqj!! bbzt??", "hjkl trwq"])
def test_made_up_words_are_not_understood_whatever_the_nlu_would_say(words: str, engine: Engine) -> None:
    chat = _chat(engine)
    chat.say(words)
    assert chat.rasa.seen == [gibberish.FALLBACK_TEXT]


@pytest.mark.parametrize("words", [
    "wat is teh dose of cardiovx",  # typos, but words of ours
    "thx", "pls", "glucorel", "k", "👍", "12345", "ok ok ok",
    "soooo gooood", "yesss pls", "heyy", "tyvm", "sdfgh",  # held-down letters, one unknown word alone
    "hmmm okk", "plimb zorbo",  # unknown, but words in shape: the NLU's to place
])
def test_words_anybody_knows_go_to_rasa_as_typed(words: str, engine: Engine) -> None:
    chat = _chat(engine)
    chat.say(words)
    assert chat.rasa.seen and chat.rasa.seen[0] != gibberish.FALLBACK_TEXT


def test_a_surname_answering_the_name_question_is_an_answer_not_gibberish(engine: Engine) -> None:
    chat = _chat(engine)
    _bot_asked(chat, intake.QUESTIONS["hcp_name"])
    assert gibberish.is_gibberish("Ludek Smrz")  # a Czech name: unknown words, one without a vowel
    chat.say("Ludek Smrz")
    assert chat.rasa.seen == ["Ludek Smrz"]


@pytest.mark.parametrize("words", [
    "could you put me through to med info",
    "I'd like to speak with one of your MSLs",
    "connect me to the medical information team please",
    "have the msl call me back tomorrow",
])
def test_a_plain_ask_for_a_medical_team_is_the_handoff_intent(words: str, engine: Engine) -> None:
    chat = _chat(engine)
    chat.say(words)
    assert chat.rasa.seen == ["/request_human"]


@pytest.mark.parametrize("words", [
    "what did the MSL say about the renal data?",  # names a team, asks no connection
    "talk to my rep about samples",  # the rep: left to the NLU (a sample request)
    "medical information on cardiovex dosing",  # a topic, not a connection
    "could we set up a call with your msl next month",  # a meeting request
    "book me a zoom with someone from medical information",
])
def test_other_mentions_of_a_team_go_as_typed(words: str, engine: Engine) -> None:
    chat = _chat(engine)
    chat.say(words)
    assert chat.rasa.seen == [words]


def test_the_team_ask_reads_only_short_messages() -> None:
    assert routing.asks_to_be_put_through("put me through to medical information")
    assert not routing.asks_to_be_put_through("put me through to medical information " + "because " * 30)


def test_the_vocabulary_holds_the_model_words_our_short_forms_and_product_names() -> None:
    known = gibberish.vocabulary()
    assert {"dose", "pharmacy", "thx", "msl", "cardiovex", "glucorel"} <= known
    assert not {"qwzx", "plimb"} & known


def test_an_outcome_carries_the_question_the_bot_had_asked(engine: Engine) -> None:
    chat = _chat(engine)
    _bot_asked(chat, intake.QUESTIONS["licence_number"])
    hook = chat.processor.safety_hook
    chat.clock.advance(minutes=1)
    now = chat.clock.now()
    with Session(engine) as s:
        conv = s.get_one(Conversation, chat.conversation_id)
        msg = conversations.persist_inbound(s, conv, text="GMC 7654321", now=now).message
        outcome = hook(s, conv, msg, now)
        assert isinstance(outcome, SafetyOutcome) and outcome.asked == "licence_number"
        s.rollback()
