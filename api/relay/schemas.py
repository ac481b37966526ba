"""What the relay streams carry (JSON in ``data:`` lines of server-sent events)."""

from __future__ import annotations

from pydantic import BaseModel


class RelayButton(BaseModel):
    title: str
    payload: str


class RelayMessage(BaseModel):
    """One message as a participant sees it. ``withheld``: the body is a placeholder (firewall)."""

    id: int
    direction: str
    sender_type: str
    sender_label: str | None = None
    body: str
    approval_code: str | None
    content_id: str | None
    content_version: int | None
    buttons: list[RelayButton]
    created_at: str
    withheld: bool


class RelayState(BaseModel):
    state: str
    assigned_staff_id: str | None
