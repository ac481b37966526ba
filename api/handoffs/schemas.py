"""What the Inbox console's JSON API reads and returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.handoffs.models import Handoff


class HandoffRead(BaseModel):
    id: str
    reference: str
    conversation_id: str
    target: str
    reason: str
    status: str
    summary: str
    sla_due_at: datetime
    sla: str  # overdue | due-soon | ok
    requested_staff_id: str | None
    requested_for_me: bool
    claimed_by: str | None
    claimed_by_name: str | None
    claimed_at: datetime | None
    contact_preference: str | None
    outcome: str | None
    created_at: datetime
    closed_at: datetime | None
    channel: str
    hcp_name: str | None
    hcp_specialty: str | None
    hcp_territory: str | None
    # Auto-assignment: who it is offered to now, and until when.
    offered_to_me: bool = False
    offered_to_name: str | None = None
    offer_expires_at: datetime | None = None
    # Queue triage (api.handoffs.attention): the last message as this viewer may read it, how long
    # the HCP has waited for a person, and whether they opted out (STOP).
    preview: str | None = None
    preview_from: str | None = None
    preview_withheld: bool = False
    waiting_since: datetime | None = None
    waiting_seconds: int | None = None
    opted_out: bool = False

    @classmethod
    def build(cls, h: Handoff, *, summary: str, sla: str, requested_for_me: bool, claimed_by_name: str | None,
              channel: str, hcp_name: str | None, hcp_specialty: str | None,
              hcp_territory: str | None, offered_to_me: bool = False,
              offered_to_name: str | None = None) -> HandoffRead:
        return cls(
            id=h.id, reference=h.reference, conversation_id=h.conversation_id, target=h.target, reason=h.reason,
            status=h.status, summary=summary, sla_due_at=h.sla_due_at, sla=sla,
            requested_staff_id=h.requested_staff_id, requested_for_me=requested_for_me, claimed_by=h.claimed_by,
            claimed_by_name=claimed_by_name, claimed_at=h.claimed_at, contact_preference=h.contact_preference,
            outcome=h.outcome, created_at=h.created_at, closed_at=h.closed_at, channel=channel, hcp_name=hcp_name,
            hcp_specialty=hcp_specialty, hcp_territory=hcp_territory, offered_to_me=offered_to_me,
            offered_to_name=offered_to_name, offer_expires_at=h.offer_expires_at if h.offered_to else None,
        )


class AssignmentRead(BaseModel):
    """The signed-in person's side of auto-assignment (shown in the Inbox header)."""

    auto_assign: bool
    presence: str
    load: int
    capacity: int


class QueueRead(BaseModel):
    queued: list[HandoffRead]
    mine: list[HandoffRead]
    offered: list[HandoffRead] = []
    assignment: AssignmentRead | None = None


class PresenceCreate(BaseModel):
    presence: str = Field(max_length=16)


class AttentionHandoffRead(BaseModel):
    id: str
    reference: str
    target: str


class AttentionRead(BaseModel):
    """What every console page's nav badge polls: how many handoffs wait for this staff member."""

    queued: int
    mine: int
    recent: list[AttentionHandoffRead]


class StaffMessageRead(BaseModel):
    """One message as a staff member may see it (the relay stream uses the same shape)."""

    id: int
    direction: str
    sender_type: str
    body: str | None
    approval_code: str | None
    created_at: datetime
    withheld: bool


class ConversationStateRead(BaseModel):
    state: str
    assigned_staff_id: str | None
    handoff_status: str
    claimed_by: str | None


class MessagesRead(BaseModel):
    messages: list[StaffMessageRead]
    state: ConversationStateRead


class ProfileCardRead(BaseModel):
    identified: bool
    name: str | None
    specialty: str | None
    country: str | None
    territory: str | None
    verification: str
    channel: str
    market: str | None
    preferences: dict[str, str]
    open_requests: list[dict[str, Any]]
    recent_feedback: list[dict[str, Any]]
    inquiries: list[dict[str, Any]]
    adverse_events: int


class ColleagueRead(BaseModel):
    id: str
    name: str
    roles: list[str]
    available: bool


class HandoffDetailRead(BaseModel):
    handoff: HandoffRead
    card: ProfileCardRead
    colleagues: list[ColleagueRead]
    medical_content_withheld: bool


class ContentChoiceRead(BaseModel):
    content_id: str
    version: int
    title: str
    product: str
    kind: str
    approval_code: str
    excerpt: str
    sendable: bool
    reason: str | None


class ContentChoicesRead(BaseModel):
    items: list[ContentChoiceRead]


class TransferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_target: str | None = Field(default=None, max_length=32)
    to_staff_id: str | None = Field(default=None, max_length=32)
    note: str | None = Field(default=None, max_length=500)


class CloseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(max_length=32)
    note: str | None = Field(default=None, max_length=500)


class ReplyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Longer than the send limit on purpose: the service says how long the text is and keeps it.
    text: str = Field(max_length=20000)
    # Send past an overridable screen finding (promotional, personal data); recorded in the audit.
    override_reason: str | None = Field(default=None, max_length=2000)


class ContentSendCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content_id: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=1)


class SentRead(BaseModel):
    message: StaffMessageRead


class FindingRead(BaseModel):
    kind: str
    label: str
    detail: str
    span: list[int] | None = None
    excerpt: str | None = None


class ScreenedSentRead(SentRead):
    """A reply that went out, with what the screen noted on it (an adverse event captured as a case,
    findings sent past with a reason)."""

    findings: list[FindingRead] = Field(default_factory=list)
    adverse_event_reference: str | None = None
    overridden: list[str] = Field(default_factory=list)
