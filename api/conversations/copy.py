"""Bot copy the api itself says (without Rasa). Kept in one place for review."""

from __future__ import annotations

from api.conversations.drafts import Button

TALK_TO_PERSON = Button("Talk to a person", "/request_human")

# A message whose turn failed for a reason other than an outage (it is kept, never dropped).
TURN_SET_ASIDE = (
    "Sorry, something went wrong on our side while handling that message. It is saved and a person "
    "from our team can pick it up. Would you like that?"
)

RASA_FALLBACK = (
    "Sorry, I can't process that right now. Your message is saved and nothing is lost. "
    "Would you like a person from our team to pick this up?"
)

HANDOFF_QUEUED = (
    "Thank you. I've asked {who} to join this conversation (reference {reference}). "
    "They will reply here by {due}."
)

CONTENT_NO_LONGER_AVAILABLE = (
    "I'm sorry, the approved information I was about to send is no longer available. "
    "I can pass your question to Medical Information or connect you with a person."
)
# The answer action's one-line hint to an unverified WhatsApp number; the verification intake's
# introduction says the same and more, so a turn that starts the intake drops the hint.
VERIFY_HINT = ("I can share general information only until you are verified as a healthcare professional. "
               "It takes a minute.")
