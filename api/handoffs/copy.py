"""What the HCP is told about a handoff: acknowledgements, contact choices, staff joining, handing
back, transfers and closing (user-facing copy, kept apart from the logic in ``service``)."""

from __future__ import annotations

from api.conversations.drafts import Button

HANDOFF_OUT_OF_HOURS = (
    "Thank you. I've asked {who} to join this conversation (reference {reference}), but our team is "
    "not at work right now (hours: {hours}). A person will pick this up when we open at {opens} and "
    "reply here by {due}. If you prefer, we can call you back or email you instead."
)
HANDOFF_NOBODY_AVAILABLE = (
    "Thank you. I've asked {who} to join this conversation (reference {reference}), but nobody is free "
    "right now. A person will reply here by {due} at the latest. If you prefer, we can call you back "
    "or email you instead."
)
CONTACT_PAYLOAD = "/handoff_contact"
CONTACT_CHOICES = {"callback": "Call me back", "email": "Email me instead", "chat": "Wait for a reply here"}
CONTACT_NOTED = {
    "callback": "Noted: {who} will call you back instead (reference {reference}). If we may not have your "
                "number, reply here with the best number and time to call.",
    "email": "Noted: {who} will reply by email instead (reference {reference}). If we may not have your "
             "email address, reply here with it.",
    "chat": "Noted: a person will reply here in this conversation (reference {reference}).",
}
NO_OPEN_HANDOFF = "There is no open request for a person in this conversation right now. Would you like one?"
STAFF_JOINED = "{name} from our team has joined the conversation."
HANDED_BACK = ("{name} has handed this conversation back to the automated assistant. Ask me anything, "
               "or tap 'Talk to a person' if you need us again.")
TRANSFERRED_TO_TEAM = ("I've passed this conversation to {who} (reference {reference}). "
                       "They will reply here by {due}.")
TRANSFERRED_TO_PERSON = "{name} from our team will continue this conversation (reference {reference})."
CLOSED = "Thank you for talking with us. {name} has closed this conversation (reference {reference})."
SCORE_THANKS = "Thank you for the rating — it helps us improve."


def contact_buttons() -> list[Button]:
    return [Button(title, f'{CONTACT_PAYLOAD}{{"via": "{via}"}}') for via, title in CONTACT_CHOICES.items()]
