"""What a feature hands the worker to send: plain copy, or a reference to approved content.

A draft never carries approved body text itself: ``content_ref`` names a content version,
and the worker renders it through the knowledge gate at send time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Button:
    title: str
    payload: str

    def as_dict(self) -> dict[str, str]:
        """The shape messages and Rasa responses carry."""
        return {"title": self.title, "payload": self.payload}


@dataclass(frozen=True)
class ContentRef:
    content_id: str
    version: int
    answer_id: str | None = None


@dataclass
class ReplyDraft:
    text: str = ""
    buttons: list[Button] = field(default_factory=list)
    content_ref: ContentRef | None = None
    sender_type: str = "bot"
