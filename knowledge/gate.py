"""The sendability gate (COMPLIANCE.md, "Approved content only"), applied before ranking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from knowledge.library import VERIFIED_ONLY_KINDS, Status


@dataclass(frozen=True)
class Recipient:
    market: str            # ISO alpha-2
    audience: str = "hcp"  # hcp | patient | public
    verified: bool = False  # srd/pi items need a verified HCP


class Gateable(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def approved_at(self) -> date: ...
    @property
    def expires_at(self) -> date: ...
    @property
    def markets(self) -> Sequence[str]: ...
    @property
    def audience(self) -> Sequence[str]: ...


def gate_reason(item: Gateable, recipient: Recipient, today: date) -> str | None:
    """Why ``item`` may not go to ``recipient`` today, or ``None`` when it may."""
    if item.status != Status.approved:
        return f"status is {item.status}"
    if today < item.approved_at:
        return f"not yet approved (approved_at {item.approved_at})"
    if today >= item.expires_at:
        return f"expired on {item.expires_at}"
    if recipient.market not in item.markets:
        return f"not approved for market {recipient.market}"
    if recipient.audience not in item.audience:
        return f"not approved for audience {recipient.audience}"
    if item.kind in VERIFIED_ONLY_KINDS and not (recipient.audience == "hcp" and recipient.verified):
        return f"kind {item.kind} needs a verified HCP"
    return None
