"""Create service requests (the bot side; staff work them in ``api.requests.desk``). Services flush, never commit."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation
from api.errors import InvalidInput
from api.requests.models import RequestKind, RequestStatus, RequestTeam, ServiceRequest

# Business policy: how long the responsible team has to act, and who that team is.
SLA: dict[RequestKind, timedelta] = {
    RequestKind.samples: timedelta(days=3),
    RequestKind.patient_support: timedelta(days=2),
    RequestKind.access: timedelta(days=2),
    RequestKind.literature: timedelta(days=5),
    RequestKind.meeting: timedelta(days=2),
    RequestKind.contact_update: timedelta(days=1),
}
TEAM: dict[RequestKind, RequestTeam] = {
    RequestKind.samples: RequestTeam.rep,
    RequestKind.patient_support: RequestTeam.patient_support,
    RequestKind.access: RequestTeam.market_access,
    RequestKind.literature: RequestTeam.medical_information,
    RequestKind.meeting: RequestTeam.rep,
    RequestKind.contact_update: RequestTeam.customer_service,
}
LABEL: dict[RequestKind, str] = {
    RequestKind.samples: "sample request",
    RequestKind.patient_support: "patient support programme request",
    RequestKind.access: "reimbursement and access request",
    RequestKind.literature: "literature request",
    RequestKind.meeting: "meeting request",
    RequestKind.contact_update: "contact details update",
}
TEAM_WORDS: dict[RequestTeam, str] = {
    RequestTeam.rep: "your representative",
    RequestTeam.msl: "a medical science liaison",
    RequestTeam.patient_support: "our patient support team",
    RequestTeam.market_access: "our market access team",
    RequestTeam.medical_information: "our Medical Information team",
    RequestTeam.customer_service: "our customer service team",
}


def _reference(now: datetime) -> str:
    return f"SR-{now:%y%m%d}-{secrets.token_hex(3).upper()}"


def create_request(
    session: Session,
    conversation: Conversation,
    *,
    kind: str,
    details: dict[str, Any],
    now: datetime,
    product: str | None = None,
    message_id: int | None = None,
    team: str | None = None,
) -> ServiceRequest:
    """Record a request for a human team with its SLA; audited."""
    try:
        kind_value = RequestKind(kind)
        team_value = RequestTeam(team) if team else TEAM[kind_value]
    except ValueError as exc:
        raise InvalidInput(f"unknown request kind or team: {kind!r}/{team!r}") from exc
    clean = {k: v for k, v in details.items() if v not in (None, "")}
    row = ServiceRequest(
        reference=_reference(now), kind=kind_value, status=RequestStatus.open, team=team_value,
        conversation_id=conversation.id, hcp_id=conversation.hcp_id, message_id=message_id,
        channel=conversation.channel, product=product, details=clean, created_at=now,
        sla_due_at=now + SLA[kind_value],
    )
    session.add(row)
    session.flush()
    audit.record(session, action="service_request.created", subject_type="service_request",
                 subject_id=row.id, actor_type="bot",
                 data={"reference": row.reference, "kind": kind_value, "team": team_value,
                       "conversation_id": conversation.id, "message_id": message_id,
                       "sla_due_at": row.sla_due_at.isoformat()}, at=now)
    return row


def confirmation(row: ServiceRequest) -> str:
    """The reply: what was recorded, its reference and when the team will act."""
    kind = RequestKind(row.kind)
    due = row.sla_due_at.strftime("%d %b %Y")
    return (f"Done — your {LABEL[kind]} is recorded (reference {row.reference}). "
            f"{TEAM_WORDS[RequestTeam(row.team)].capitalize()} will follow up by {due}.")


def requests_for_conversation(session: Session, conversation_id: str) -> list[ServiceRequest]:
    return list(session.execute(
        select(ServiceRequest).where(ServiceRequest.conversation_id == conversation_id)
        .order_by(ServiceRequest.created_at)
    ).scalars())
