"""What a feature hands the worker to send: plain copy, or a reference to approved content.

A draft never carries approved body text itself: ``content_ref`` names a content version,
and the worker renders it through the knowledge gate at send time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (a turn's screening outcome is stored with its inbox row)."""
        ref = self.content_ref
        return {"text": self.text, "buttons": [b.as_dict() for b in self.buttons],
                "content_ref": None if ref is None else {"content_id": ref.content_id, "version": ref.version,
                                                         "answer_id": ref.answer_id},
                "sender_type": self.sender_type}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplyDraft:
        ref = data.get("content_ref")
        return cls(text=str(data.get("text", "")),
                   buttons=[Button(str(b["title"]), str(b["payload"])) for b in data.get("buttons", [])],
                   content_ref=None if not ref else ContentRef(str(ref["content_id"]), int(ref["version"]),
                                                               ref.get("answer_id")),
                   sender_type=str(data.get("sender_type", "bot")))
