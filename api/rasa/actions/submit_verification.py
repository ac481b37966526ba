"""action_submit_verification: name, licence number and country → a pending HCP verification.

Until a person verifies the HCP, the conversation gets public-audience content only; service
requests and adverse-event capture keep working.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from api.audit import service as audit
from api.conversations.models import Channel, Conversation
from api.hcps.models import ChannelIdentity, Hcp, VerificationStatus
from api.rasa.actions.protocol import ActionContext, ActionResult, slot_set, text

NAME = "action_submit_verification"
SLOTS = ("hcp_name", "licence_number", "country")

REPLY = ("Thank you, {name}. We'll check your registration ({licence}, {country}) — usually within one "
         "working day. Until then I can share general information, take service requests and pass "
         "questions to Medical Information.")

ALREADY_VERIFIED = ("You're already verified, {name}: nothing to do. Ask me anything, or say \"talk to a person\" "
                    "if your details have changed.")
RESUBMITTED = ("Thank you, {name}. We've updated your registration details ({licence}, {country}) and will "
               "check them — usually within one working day. Until then I can share general information, take "
               "service requests and pass questions to Medical Information.")

COUNTRIES = {"united kingdom": "GB", "uk": "GB", "england": "GB", "scotland": "GB", "wales": "GB",
             "great britain": "GB", "ireland": "IE", "germany": "DE", "deutschland": "DE", "france": "FR",
             "spain": "ES", "italy": "IT", "netherlands": "NL", "belgium": "BE", "portugal": "PT",
             "austria": "AT", "switzerland": "CH", "sweden": "SE", "denmark": "DK", "norway": "NO",
             "poland": "PL", "united states": "US", "usa": "US", "us": "US", "canada": "CA"}


def country_code(raw: str | None) -> str | None:
    value = (raw or "").strip().lower().rstrip(".")
    if value in COUNTRIES:
        return COUNTRIES[value]
    if len(value) == 2 and value.isalpha():
        return value.upper()
    return None


def is_unverified_whatsapp(ctx: ActionContext) -> bool:
    conv = ctx.conversation
    if conv.channel != Channel.whatsapp:
        return False
    hcp = ctx.session.get(Hcp, conv.hcp_id) if conv.hcp_id else None
    return hcp is None or hcp.verification_status != VerificationStatus.verified


def apply_audience(ctx: ActionContext) -> None:
    """An unverified WhatsApp number only ever gets public-audience content; a verified one, HCP content."""
    if ctx.conversation.channel == Channel.whatsapp:
        ctx.conversation.audience = "public" if is_unverified_whatsapp(ctx) else "hcp"


def already_verified(ctx: ActionContext, hcp: Hcp, *, typed_name: str = "", stage: str | None = None
                     ) -> dict[str, Any]:
    """A verified HCP asked to verify again: audited, HCP content kept, told so (the reply)."""
    data: dict[str, Any] = {"conversation_id": ctx.conversation.id, "message_id": ctx.message_id}
    if stage is not None:
        data["stage"] = stage
    audit.record(ctx.session, action="hcp.verification_repeated", subject_type="hcp", subject_id=hcp.id,
                 actor_type="hcp", data=data, at=ctx.now)
    apply_audience(ctx)
    return text(ALREADY_VERIFIED.format(name=hcp.name or typed_name or "doctor"), verification="verified")


def _bind_identity(ctx: ActionContext, conv: Conversation, hcp: Hcp) -> None:
    if not conv.address:
        return
    identity = ctx.session.execute(select(ChannelIdentity).where(
        ChannelIdentity.channel == conv.channel, ChannelIdentity.address == conv.address)).scalar_one_or_none()
    if identity is None:
        ctx.session.add(ChannelIdentity(channel=conv.channel, address=conv.address, hcp_id=hcp.id,
                                        created_at=ctx.now))
    else:
        identity.hcp_id = hcp.id


def run(ctx: ActionContext) -> ActionResult:
    conv = ctx.conversation
    name = str(ctx.slot("hcp_name") or "").strip()[:200]
    licence = str(ctx.slot("licence_number") or "").strip()[:64]
    raw_country = str(ctx.slot("country") or "").strip()
    events = [slot_set(s, None) for s in SLOTS] + [slot_set("requested_slot", None)]
    existing = ctx.session.get(Hcp, conv.hcp_id) if conv.hcp_id else None
    if existing is not None and existing.verification_status == VerificationStatus.verified:
        # Going through the form again never demotes a verified HCP nor creates a second record.
        return ActionResult(responses=[already_verified(ctx, existing, typed_name=name)], events=events)
    if existing is not None:
        # Pending (new details) or rejected (applying again): the same record goes back to pending,
        # so the verification queue shows one entry per person.
        previous = existing.verification_status
        existing.name = name or existing.name
        existing.licence_id = licence or existing.licence_id
        existing.country = country_code(raw_country) or existing.country
        existing.verification_status = VerificationStatus.pending
        _bind_identity(ctx, conv, existing)
        apply_audience(ctx)
        ctx.session.flush()
        audit.record(ctx.session, action="hcp.verification_requested", subject_type="hcp", subject_id=existing.id,
                     actor_type="hcp", data={"conversation_id": conv.id, "channel": conv.channel,
                                             "country": existing.country, "message_id": ctx.message_id,
                                             "resubmitted_from": previous}, at=ctx.now)
        reply = RESUBMITTED.format(name=name or existing.name or "doctor",
                                   licence=licence or existing.licence_id or "no number given",
                                   country=existing.country or raw_country or "country not given")
        return ActionResult(responses=[text(reply, verification="pending")], events=events)
    hcp = Hcp(name=name or None, licence_id=licence or None, country=country_code(raw_country),
              verification_status=VerificationStatus.pending, created_at=ctx.now)
    ctx.session.add(hcp)
    ctx.session.flush()
    conv.hcp_id = hcp.id
    _bind_identity(ctx, conv, hcp)
    apply_audience(ctx)
    ctx.session.flush()
    audit.record(ctx.session, action="hcp.verification_requested", subject_type="hcp", subject_id=hcp.id,
                 actor_type="hcp", data={"conversation_id": conv.id, "channel": conv.channel,
                                         "country": hcp.country, "message_id": ctx.message_id}, at=ctx.now)
    reply = REPLY.format(name=name or "doctor", licence=licence or "no number given",
                         country=hcp.country or raw_country or "country not given")
    return ActionResult(responses=[text(reply, verification="pending")], events=events)
