"""After a turn the bot got wrong, a plain request for a person goes to Rasa as the handoff intent,
whatever the NLU would have made of the words; before any miss the words go to Rasa as typed."""

from __future__ import annotations

from sqlalchemy import Engine

from api.conversations.models import Conversation
from api.db import unit_of_work
from tests.api.test_ae_turn import Chat, ScriptedRasa


def test_a_plain_request_for_a_person_after_a_miss_is_the_handoff_intent(engine: Engine) -> None:
    chat = Chat(engine, ScriptedRasa())
    with unit_of_work(chat.factory) as s:  # the previous turn failed (counted by the fallback action)
        s.get_one(Conversation, chat.conversation_id).failed_turns = 1
    chat.say("this is going nowhere, can I talk to somebody")
    assert chat.rasa.seen == ["/request_human"]


def test_before_any_miss_the_words_go_as_typed_with_product_spelling_fixed(engine: Engine) -> None:
    chat = Chat(engine, ScriptedRasa())
    chat.say("can I talk to somebody about glucorell pens")
    assert chat.rasa.seen == ["can I talk to somebody about glucorel pens"]


def test_a_name_after_a_miss_is_not_taken_for_a_request(engine: Engine) -> None:
    chat = Chat(engine, ScriptedRasa())
    with unit_of_work(chat.factory) as s:
        s.get_one(Conversation, chat.conversation_id).failed_turns = 1
    chat.say("Oskar Person")
    assert chat.rasa.seen == ["Oskar Person"]
