"""The api's bridge to the approved library: who is asking, and the send-time gate."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from api.conversations.models import Conversation, Message
from api.errors import ContentGated
from api.hcps.models import Hcp, VerificationStatus

if TYPE_CHECKING:
    from knowledge.service import Recipient, SendableContent


def recipient_for(session: Session, conv: Conversation, default_market: str) -> Recipient:
    from knowledge.service import Recipient

    verified = False
    market = conv.market
    if conv.hcp_id is not None:
        hcp = session.get(Hcp, conv.hcp_id)
        if hcp is not None:
            verified = hcp.verification_status == VerificationStatus.verified
            market = market or hcp.country
    return Recipient(market=(market or default_market).upper(), audience=conv.audience, verified=verified)


def render(session: Session, conv: Conversation, content_id: str, version: int, *,
           default_market: str, today: date) -> SendableContent:
    """The verbatim approved text for this recipient now, or ContentGated."""
    from knowledge.service import render_for_send

    recipient = recipient_for(session, conv, default_market)
    return render_for_send(session, content_id, version, recipient, today=today)


def make_send_gate(default_market: str):  # type: ignore[no-untyped-def]
    """Outbox gate: the queued body must still be exactly what the library allows now."""

    def gate(session: Session, msg: Message, conv: Conversation, today: date) -> None:
        assert msg.content_id is not None and msg.content_version is not None
        sendable = render(session, conv, msg.content_id, msg.content_version,
                          default_market=default_market, today=today)
        if sendable.text() != msg.body:
            raise ContentGated("queued body differs from the approved version")

    return gate
