"""Deciding HCP verifications: a person checks the registration the HCP gave the bot.

Until an HCP is verified, their WhatsApp conversations get public-audience content only
(COMPLIANCE: srd/pi items need a verified HCP). The decision is a conditional update, so two
admins deciding at once cannot both win, and the HCP is told the outcome on their channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation, Message, SenderType
from api.conversations.service import add_outbound
from api.errors import Conflict, InvalidInput, NotFound
from api.hcps import adopt
from api.hcps.models import ChannelIdentity, Hcp, VerificationStatus
from api.staff import notes

VERIFIED_TEXT = ("Good news: your professional registration has been confirmed. You now have access to the "
                 "information we provide for healthcare professionals.")
REJECTED_TEXT = ("We could not confirm your professional registration from the details you gave, so I can "
                 "only share general information here. Reply 'verify me' to try again, or ask for a person.")


@dataclass(frozen=True)
class PendingVerification:
    hcp_id: str
    name: str | None
    licence_id: str | None
    country: str | None
    channels: list[str]
    requested_at: datetime
    # Other HCP records with the same licence number (normalised): two phone numbers claiming one
    # registration need a look before either is verified.
    same_licence: list[str] = field(default_factory=list)


def list_pending(session: Session) -> list[PendingVerification]:
    rows = session.execute(select(Hcp).where(Hcp.verification_status == VerificationStatus.pending)
                           .order_by(Hcp.created_at)).scalars().all()
    channels: dict[str, list[str]] = {}
    if rows:
        for ident in session.execute(select(ChannelIdentity).where(
                ChannelIdentity.hcp_id.in_([h.id for h in rows]))).scalars():
            channels.setdefault(ident.hcp_id or "", []).append(ident.channel)
    wanted = {licence_key(h.licence_id) for h in rows} - {""}
    holders: dict[str, list[Hcp]] = {}
    if wanted:
        normalised = func.upper(func.replace(func.replace(func.replace(Hcp.licence_id, " ", ""), "-", ""), ".", ""))
        for other in session.execute(select(Hcp).where(normalised.in_(sorted(wanted)))).scalars():
            key = licence_key(other.licence_id)
            if key in wanted:
                holders.setdefault(key, []).append(other)

    def others(h: Hcp) -> list[str]:
        found = holders.get(licence_key(h.licence_id), [])
        return [f"{o.name or 'unnamed'} ({o.verification_status})" for o in found if o.id != h.id]

    return [PendingVerification(hcp_id=h.id, name=h.name, licence_id=h.licence_id, country=h.country,
                                channels=sorted(set(channels.get(h.id, []))), requested_at=h.created_at,
                                same_licence=others(h))
            for h in rows]


def licence_key(licence_id: str | None) -> str:
    """A licence number as compared for duplicates: upper case, without spaces, hyphens and dots."""
    return (licence_id or "").upper().replace(" ", "").replace("-", "").replace(".", "")


def _latest_conversation(session: Session, hcp_id: str) -> Conversation | None:
    return session.execute(
        select(Conversation).where(Conversation.hcp_id == hcp_id).order_by(Conversation.created_at.desc())
    ).scalars().first()


def decide(session: Session, hcp_id: str, *, approve: bool, staff_id: str, reason: str, now: datetime
           ) -> tuple[Hcp, Message | None]:
    """Verify or reject a pending HCP; returns the HCP and the message queued to tell them (if any)."""
    reason = (reason or "").strip()
    if not approve and not reason:
        raise InvalidInput("say why the registration could not be confirmed")
    if len(reason) > 1000:
        raise InvalidInput("the reason is longer than 1000 characters")
    hcp = session.get(Hcp, hcp_id)
    if hcp is None:
        raise NotFound("no such HCP")
    outcome = VerificationStatus.verified if approve else VerificationStatus.rejected
    won = session.execute(
        update(Hcp).where(Hcp.id == hcp_id, Hcp.verification_status == VerificationStatus.pending)
        .values(verification_status=outcome).execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], won).rowcount == 0:
        session.refresh(hcp)
        raise Conflict(f"this HCP is already {hcp.verification_status}")
    session.refresh(hcp)
    if approve:
        # What they told the bot before being identified (anonymous web chat, unverified WhatsApp).
        adopt.adopt(session, hcp, staff_id=staff_id, now=now)
    told: Message | None = None
    conv = _latest_conversation(session, hcp_id)
    if conv is not None:
        # Verified HCPs get HCP-audience content again (the bot narrowed it to public while pending).
        for c in session.execute(select(Conversation).where(Conversation.hcp_id == hcp_id)).scalars():
            c.audience = "hcp" if approve else "public"
        told = add_outbound(session, conv, text=VERIFIED_TEXT if approve else REJECTED_TEXT, now=now,
                            sender_type=SenderType.system)
    audit.record(session, action="hcp.verified" if approve else "hcp.verification_rejected", subject_type="hcp",
                 subject_id=hcp_id, actor_type="staff", actor_id=staff_id,
                 data={"notified_message_id": told.id if told else None,
                       **notes.keep(session, reason, subject_type="hcp", subject_id=hcp_id, field="reason",
                                    author_id=staff_id, at=now)}, at=now)
    return hcp, told
