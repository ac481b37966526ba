from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ButtonRead(BaseModel):
    title: str
    payload: str


class MessageRead(BaseModel):
    id: int
    text: str
    direction: str
    sender: str
    # Who spoke, for staff messages ("Medical Information · MI-2026-000042"); None: bot, HCP, notices.
    sender_label: str | None = None
    content_id: str | None
    content_version: int | None
    approval_code: str | None
    buttons: list[ButtonRead]
    created_at: str


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    payload: str | None = Field(default=None, max_length=512)
    client_message_id: str | None = Field(default=None, min_length=1, max_length=64)


class SessionRead(BaseModel):
    session_id: str  # the secret: send it in the X-Chat-Session header, never in a URL
    stream_url: str  # the live stream's path (its cookie is scoped to it); add /events?after=<id>


class WaitingRead(BaseModel):
    """An open request for a person, for the page's status banner."""

    reference: str
    who: str            # "a colleague from our customer team", "our Medical Information team"
    status: str         # queued (nobody has it yet) | claimed (a person is in the chat)
    expected_by: str    # as the HCP reads it: "14:00 GMT on Mon 07 Dec"


class TurnRead(BaseModel):
    messages: list[MessageRead]
    # The open request for a person, if any (None: the HCP is with the assistant).
    waiting: WaitingRead | None = None
    # True: the message is stored but its turn has not finished within the wait; the replies
    # follow on the message stream (GET .../messages or .../events).
    pending: bool = False
