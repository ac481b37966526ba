"""action_ask_<slot>: the question a form asks for each slot it still needs.

One module serves every ``action_ask_<slot>`` (Rasa calls it when the form requests that slot);
the wording lives here, in one place for review.
"""

from __future__ import annotations

from api.rasa.actions.protocol import Action, ActionContext, ActionResult, text

PRODUCT_BUTTONS = [{"title": t, "payload": t.lower()} for t in ("Cardiovex", "Respizan", "Glucorel")]

QUESTIONS: dict[str, tuple[str, list[dict[str, str]]]] = {
    "product": ("Which product is this about?", PRODUCT_BUTTONS),
    "sample_quantity": ("How many sample packs would you like?", []),
    "delivery_address": ("Where should we deliver them? Please give the practice or hospital address.", []),
    "support_topic": ("What does your patient need help with (for example enrolment, copay card, nurse "
                      "support)? Please don't include the patient's name.", []),
    "access_topic": ("What do you need help with: a prior authorisation, a formulary listing, or a "
                     "reimbursement appeal? Please add the payer or plan if you know it.", []),
    "literature_topic": ("Which publication or topic would you like literature on?", []),
    "meeting_with": ("Who would you like to meet: your representative or a medical science liaison (MSL)?",
                     [{"title": "My representative", "payload": "my representative"},
                      {"title": "An MSL", "payload": "an MSL"}]),
    "preferred_times": ("When suits you? Give a few preferred days and times.", []),
    "new_contact_details": ("What are your new contact details (email, phone or address)?", []),
    "hcp_name": ("To give you access to information for healthcare professionals I need to verify you. "
                 "What is your full name?", []),
    "licence_number": ("What is your professional licence or registration number?", []),
    "country": ("In which country are you registered?", []),
}


def _make(slot: str) -> Action:
    question, buttons = QUESTIONS[slot]

    def run(ctx: ActionContext) -> ActionResult:
        return ActionResult(responses=[text(question, list(buttons), asks=slot)])

    return run


ACTIONS: dict[str, Action] = {f"action_ask_{slot}": _make(slot) for slot in QUESTIONS}
