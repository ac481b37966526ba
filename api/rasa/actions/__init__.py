"""Custom actions Rasa calls on the api. One module per action."""

from __future__ import annotations

from api.rasa.actions import answer_question, fallback, request_handoff
from api.rasa.actions.protocol import Action

REGISTRY: dict[str, Action] = {
    module.NAME: module.run
    for module in (answer_question, fallback, request_handoff)
}
