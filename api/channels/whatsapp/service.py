"""WhatsApp channel logic: inbound persistence, business-initiated sends, status callbacks.

Everything here takes a session and flushes; the webhook (or the caller) commits once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.channels.whatsapp.models import WhatsappMedia, WhatsappPart, WhatsappSend, WhatsappThread
from api.channels.whatsapp.text import chosen_option
from api.conversations import service as conversations
from api.conversations.models import (
    Channel,
    Conversation,
    ConversationState,
    InboxStatus,
    Message,
    MessageStatus,
    OutboxItem,
)
from api.errors import InvalidInput
from api.hcps.models import ChannelIdentity, Hcp, VerificationStatus
from api.safety import rules
from api.safety import service as safety
from api.safety.models import Consent, ConsentAction

SESSION_WINDOW = timedelta(hours=24)

# Business-initiated purposes → the consent purpose they need an opt-in for.
PURPOSES: dict[str, str] = {
    "medical-inquiry-answered": "medical",
    "handoff-reply": "service",
    "request-update": "service",
}

MEDIA_REPLY = (
    "Thank you — I have received your {what}. I can't open or review attachments here, so please "
    "type your question in words. If it shows a side effect or a problem with one of our products, "
    "please describe what happened; or ask to talk to a person and a colleague will look at it."
)
LOCATION_REPLY = (
    "Thank you for sharing a location. I can't use locations here; if you need a visit or a meeting, "
    "just tell me in words and I will pass it on."
)

# Message status as Twilio reports it → ours, and how far along each is (never go back).
TWILIO_STATUS: dict[str, str] = {
    "accepted": MessageStatus.queued, "scheduled": MessageStatus.queued, "queued": MessageStatus.queued,
    "sending": MessageStatus.queued, "sent": MessageStatus.sent, "delivered": MessageStatus.delivered,
    "read": MessageStatus.read, "failed": MessageStatus.failed, "undelivered": MessageStatus.failed,
    "canceled": MessageStatus.failed,
}
_RANK: dict[str, int] = {MessageStatus.queued: 0, MessageStatus.sent: 1, MessageStatus.failed: 2,
         MessageStatus.delivered: 3, MessageStatus.read: 4}


# ---------------------------------------------------------------- inbound


@dataclass(frozen=True)
class Media:
    url: str
    content_type: str


@dataclass
class InboundForm:
    """The fields of Twilio's incoming-message webhook that we use."""

    message_sid: str
    from_: str
    body: str
    media: list[Media] = field(default_factory=list)
    latitude: str | None = None
    longitude: str | None = None
    address: str | None = None
    label: str | None = None
    button_payload: str | None = None
    opt_out_type: str | None = None
    profile_name: str | None = None

    @classmethod
    def parse(cls, params: dict[str, str]) -> InboundForm:
        sid = params.get("MessageSid") or params.get("SmsMessageSid") or ""
        sender = params.get("From", "")
        if not sid.strip():
            raise InvalidInput("MessageSid is required")
        if len(sid) > 64:
            raise InvalidInput("MessageSid is too long")
        if not sender.startswith("whatsapp:") or len(sender) > 64 or len(sender) < 11:
            raise InvalidInput("From must be a WhatsApp address like whatsapp:+15551234567")
        try:
            n_media = int(params.get("NumMedia", "0") or 0)
        except ValueError as exc:
            raise InvalidInput("NumMedia must be a number") from exc
        if not 0 <= n_media <= 10:
            raise InvalidInput("NumMedia out of range")
        media = [Media(params.get(f"MediaUrl{i}", ""), params.get(f"MediaContentType{i}", ""))
                 for i in range(n_media)]
        body = params.get("Body", "")
        if "\x00" in body:
            raise InvalidInput("Body contains a NUL character")
        located = bool(params.get("Latitude") and params.get("Longitude"))
        if not body.strip() and not media and not located:
            raise InvalidInput("Body is empty and the message has no media or location")
        return cls(
            message_sid=sid, from_=sender, body=body, media=media,
            latitude=params.get("Latitude"), longitude=params.get("Longitude"),
            address=params.get("Address"), label=params.get("Label"),
            button_payload=params.get("ButtonPayload") or None,
            opt_out_type=(params.get("OptOutType") or "").upper() or None,
            profile_name=params.get("ProfileName"),
        )

    @property
    def is_location(self) -> bool:
        return bool(self.latitude and self.longitude)


@dataclass
class InboundResult:
    conversation_id: str
    message_id: int
    duplicate: bool
    needs_turn: bool  # the worker has work for this message
    queued_replies: int


def conversation_for(session: Session, address: str, *, now: datetime, market: str | None) -> Conversation:
    """The conversation of this WhatsApp number, created on first contact (race-safe)."""
    thread = session.get(WhatsappThread, address)
    if thread is not None:
        return conversations.get(session, thread.conversation_id)
    conv = Conversation(channel=Channel.whatsapp, address=address, state=ConversationState.bot,
                        market=market, audience="hcp", failed_turns=0, created_at=now,
                        hcp_id=verified_hcp_id(session, address))
    try:
        with session.begin_nested():
            session.add(conv)
            session.flush()
            session.add(WhatsappThread(address=address, conversation_id=conv.id, created_at=now))
            session.flush()
    except IntegrityError:
        thread = session.execute(select(WhatsappThread).where(WhatsappThread.address == address)).scalar_one()
        return conversations.get(session, thread.conversation_id)
    audit.record(session, action="conversation.created", subject_type="conversation", subject_id=conv.id,
                 actor_type="hcp", data={"channel": conv.channel}, at=now)
    return conv


def verified_hcp_id(session: Session, address: str) -> str | None:
    """The HCP this number is bound to — only once that HCP is verified."""
    row = session.execute(
        select(Hcp.id).join(ChannelIdentity, ChannelIdentity.hcp_id == Hcp.id)
        .where(ChannelIdentity.channel == Channel.whatsapp, ChannelIdentity.address == address,
               Hcp.verification_status == VerificationStatus.verified)
    ).scalar_one_or_none()
    return row


def latest_options(session: Session, conversation_id: str) -> list[dict[str, Any]] | None:
    """The numbered options of the last message we sent that offered any."""
    row = session.execute(
        select(WhatsappSend.options).where(WhatsappSend.conversation_id == conversation_id,
                                           WhatsappSend.options.is_not(None), WhatsappSend.parts_sent > 0)
        .order_by(WhatsappSend.message_id.desc()).limit(1)
    ).scalar_one_or_none()
    return list(row) if row else None


def _describe(form: InboundForm) -> str:
    """Text stored for a message without words (the record says what arrived)."""
    if form.is_location:
        where = form.label or form.address or f"{form.latitude},{form.longitude}"
        return f"[location: {where}]"
    kinds = sorted({m.content_type or "attachment" for m in form.media})
    return f"[attachment: {', '.join(kinds)}]"


def _attachment_kind(content_type: str) -> str:
    ct = content_type.lower()
    if "vcard" in ct:
        return "contact"
    if ct.startswith("image/"):
        return "image"
    if ct.startswith("audio/"):
        return "voice message"
    if ct.startswith("video/"):
        return "video"
    if ct == "application/pdf":
        return "document"
    return "attachment"


def _record_twilio_opt(session: Session, conv: Conversation, msg: Message, form: InboundForm,
                       now: datetime) -> bool:
    """STOP (keyword or Twilio's OptOutType) withdraws consent in the ingest transaction, before
    the turn is processed (until then the dispatcher already honours the stored webhook's
    ``opt_out`` flag: ``ingest.pending_stop``). Returns True when recorded."""
    keyword_stop = rules.is_opt_out(rules.normalise(form.body))
    purposes: tuple[str, ...]
    if form.opt_out_type == "STOP" or keyword_stop:
        purposes, action = safety.OPT_OUT_PURPOSES, ConsentAction.opt_out
    elif form.opt_out_type == "START":
        purposes, action = safety.OPT_IN_PURPOSES, ConsentAction.opt_in
    else:
        return False
    source = "twilio_opt_out_type" if form.opt_out_type else "keyword_webhook"
    for purpose in purposes:
        safety.record_consent(session, channel=conv.channel, address=conv.address or "", hcp_id=conv.hcp_id,
                              purpose=purpose, action=action, source=source, message_id=msg.id, now=now)
    return True


def record_inbound(session: Session, form: InboundForm, *, now: datetime, market: str | None,
                   received_at: datetime | None = None) -> InboundResult:
    """Turn one webhook delivery into a conversation message; a repeated MessageSid changes nothing.

    ``received_at``: when the webhook was persisted (``whatsapp_inbound``), if earlier than ``now``."""
    conv = conversation_for(session, form.from_, now=now, market=market)
    payload = form.button_payload
    if payload is None and form.body:
        picked = chosen_option(form.body, latest_options(session, conv.id))
        payload = str(picked["payload"]) if picked else None
    wordless = not form.body.strip() and (bool(form.media) or form.is_location)
    text = form.body if form.body.strip() else (_describe(form) if wordless else form.body)
    if not text.strip():
        raise InvalidInput("Body is empty and the message has no media or location")
    stored = conversations.persist_inbound(session, conv, text=text, now=now, payload=payload,
                                           channel_message_id=form.message_sid, sender_id=form.from_,
                                           received_at=received_at)
    if stored.duplicate:
        return InboundResult(conv.id, stored.message.id, True, stored.inbox.status == InboxStatus.pending, 0)
    msg = stored.message
    _record_twilio_opt(session, conv, msg, form, now)
    queued = 0
    for i, m in enumerate(form.media):
        session.add(WhatsappMedia(message_id=msg.id, kind="contact" if "vcard" in m.content_type.lower()
                                  else "media", url=m.url, content_type=m.content_type,
                                  data={"index": i}, created_at=now))
    if form.is_location:
        session.add(WhatsappMedia(message_id=msg.id, kind="location", data={
            "latitude": form.latitude, "longitude": form.longitude, "address": form.address,
            "label": form.label}, created_at=now))
    if form.media or form.is_location:
        session.flush()
        audit.record(session, action="whatsapp.attachment_received", subject_type="message",
                     subject_id=str(msg.id), actor_type="hcp",
                     data={"media": [m.content_type for m in form.media], "location": form.is_location},
                     at=now)
        if conv.state == ConversationState.bot:
            if form.is_location:
                reply = LOCATION_REPLY
            else:
                kinds = sorted({_attachment_kind(m.content_type) for m in form.media})
                reply = MEDIA_REPLY.format(what=" and ".join(kinds))
            conversations.add_outbound(session, conv, text=reply, now=now, in_reply_to=msg.id)
            queued += 1
    needs_turn = True
    if wordless:
        # Nothing for the screen or Rasa to read: the channel has answered, the turn is done.
        stored.inbox.status = InboxStatus.done
        stored.inbox.processed_at = now
        msg.status = MessageStatus.processed
        msg.processed_at = now
        needs_turn = False
    session.flush()
    return InboundResult(conv.id, msg.id, False, needs_turn, queued)


# ---------------------------------------------------------------- outbound


def queue_business_message(
    session: Session,
    conv: Conversation,
    *,
    purpose: str,
    text: str,
    now: datetime,
    variables: dict[str, str] | None = None,
    sender_type: str = "system",
    sender_id: str | None = None,
    buttons: list[dict[str, str]] | None = None,
) -> Message:
    """A message we start (not a reply): needs opt-in for its purpose, and outside the 24-hour
    window goes out as the purpose's approved template with ``variables``."""
    _check_purpose(purpose)
    msg = conversations.add_outbound(session, conv, text=text, now=now, sender_type=sender_type,
                                     sender_id=sender_id, buttons=buttons)
    _mark_business_initiated(session, conv, msg, purpose=purpose, variables=variables, now=now)
    return msg


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise InvalidInput(f"unknown WhatsApp purpose {purpose!r}", detail={"purposes": sorted(PURPOSES)})


def _mark_business_initiated(session: Session, conv: Conversation, msg: Message, *, purpose: str,
                             variables: dict[str, str] | None, now: datetime) -> None:
    session.add(WhatsappSend(message_id=msg.id, conversation_id=conv.id, purpose=purpose,
                             content_variables=variables or None, parts_total=0, parts_sent=0, created_at=now))
    session.flush()


def has_opt_in(session: Session, conv: Conversation, consent_purpose: str) -> bool:
    latest = session.execute(
        select(Consent.action).where(Consent.channel == conv.channel, Consent.address == (conv.address or ""),
                                     Consent.purpose == consent_purpose)
        .order_by(Consent.id.desc()).limit(1)
    ).scalar_one_or_none()
    return latest == ConsentAction.opt_in


def stop_message_id(session: Session, conv: Conversation) -> int | None:
    """The inbound message that started the current opt-out (repeated STOPs are not new ones)."""
    rows = session.execute(
        select(Consent.action, Consent.message_id)
        .where(Consent.channel == conv.channel, Consent.address == (conv.address or ""),
               Consent.purpose == "service")
        .order_by(Consent.id.desc()).limit(200)
    ).all()
    first: int | None = None
    for action, message_id in rows:
        if action != ConsentAction.opt_out:
            break
        first = message_id
    return first


def in_session_window(conv: Conversation, now: datetime) -> bool:
    return conv.last_inbound_at is not None and now - conv.last_inbound_at < SESSION_WINDOW


# ---------------------------------------------------------------- the 24-hour window: the one decision


def business_initiated_if_window_closed(session: Session, conv: Conversation, msg: Message, *, purpose: str,
                                        variables: dict[str, str] | None, now: datetime) -> str | None:
    """A staff message just queued on ``conv`` (a medical answer, a request update). Inside WhatsApp's
    24-hour window it is a free-form reply (None). Outside it, it is business-initiated: it carries
    ``purpose``, so the dispatcher sends the purpose's approved template with ``variables`` (and
    needs the HCP's opt-in for it), or holds it and tells its owner why. Returns that purpose."""
    if conv.channel != Channel.whatsapp or in_session_window(conv, now):
        return None
    _check_purpose(purpose)
    _mark_business_initiated(session, conv, msg, purpose=purpose, variables=variables, now=now)
    return purpose


@dataclass(frozen=True)
class SendForm:
    """How a queued WhatsApp message may go now: free-form (neither set), as an approved template,
    or not at all (held, with the reason)."""

    template_sid: str | None = None
    held_reason: str | None = None


def send_form(conv: Conversation, *, purpose: str | None, templates: dict[str, str], now: datetime) -> SendForm:
    """At send time: inside the 24-hour window free-form; outside it only the purpose's approved
    template (Twilio Content SID from ``templates``), else held."""
    if in_session_window(conv, now):
        return SendForm()
    template = templates.get(purpose or "")
    if template:
        return SendForm(template_sid=template)
    return SendForm(held_reason="outside WhatsApp's 24-hour window and no approved template for "
                                f"{purpose or 'a free-form reply'}")


def list_undeliverable(session: Session, *, statuses: tuple[str, ...] = ("dead", "held")) -> list[OutboxItem]:
    """The WhatsApp dead-letter and held queue, oldest first (for the consoles)."""
    return list(session.execute(
        select(OutboxItem).where(OutboxItem.channel == Channel.whatsapp, OutboxItem.status.in_(statuses))
        .order_by(OutboxItem.created_at, OutboxItem.message_id)
    ).scalars())


# ---------------------------------------------------------------- status callbacks


def apply_status(session: Session, *, sid: str, twilio_status: str, error_code: str | None,
                 now: datetime) -> bool:
    """Move a sent part (and its message) forward; never backwards. False for an unknown sid."""
    part = session.get(WhatsappPart, sid)
    if part is None:
        return False
    new = TWILIO_STATUS.get(twilio_status.lower())
    if new is None:
        return True
    old = TWILIO_STATUS.get(part.status, MessageStatus.queued)
    if _RANK[new] < _RANK[old] or (new == MessageStatus.failed and old in (MessageStatus.delivered,
                                                                            MessageStatus.read)):
        return True
    part.status = twilio_status.lower()
    part.error_code = error_code or part.error_code
    part.updated_at = now
    msg = session.get(Message, part.message_id)
    assert msg is not None
    parts = session.execute(select(WhatsappPart).where(WhatsappPart.message_id == msg.id)).scalars().all()
    states = [TWILIO_STATUS.get(p.status, MessageStatus.queued) for p in parts]
    if MessageStatus.failed in states:
        overall: str = MessageStatus.failed
        codes = [p.error_code for p in parts if p.error_code]
        msg.error = f"twilio error {codes[0]}" if codes else "twilio reported the message failed"
        send = session.get(WhatsappSend, msg.id)
        if send is not None and codes:
            send.error_code = codes[0]
    else:
        overall = min(states, key=lambda s: _RANK[s])
    if msg.status not in (MessageStatus.held,) and (
        _RANK.get(MessageStatus(overall), 0) >= _RANK.get(MessageStatus(msg.status), -1)
        or overall == MessageStatus.failed
    ):
        msg.status = overall
    session.flush()
    audit.record(session, action="message.status", subject_type="message", subject_id=str(msg.id),
                 data={"sid": sid, "status": twilio_status, "error_code": error_code}, at=now)
    return True


def requeue(session: Session, message_id: int, *, now: datetime, actor_id: str | None = None) -> OutboxItem:
    """Put a dead or held WhatsApp message back in the queue (after the cause is fixed: a template
    configured, opt-in recorded, Twilio reachable). Every check runs again at delivery."""
    from api.errors import Conflict, NotFound

    item = session.execute(select(OutboxItem).where(OutboxItem.message_id == message_id)).scalar_one_or_none()
    if item is None or item.channel != Channel.whatsapp:
        raise NotFound("no WhatsApp outbox entry for that message")
    if item.status not in ("dead", "held"):
        raise Conflict(f"only dead or held messages can be re-queued (this one is {item.status})")
    previous = item.status
    item.status = "pending"
    item.attempts = 0
    item.next_attempt_at = now
    msg = session.get(Message, message_id)
    assert msg is not None
    msg.status = MessageStatus.queued
    send = session.get(WhatsappSend, message_id)
    if send is not None:
        send.held_reason = None
        send.template_sid = None if send.parts_sent == 0 else send.template_sid
        if send.parts_sent == 0:
            send.parts_total = 0
    session.flush()
    audit.record(session, action="outbox.requeued", subject_type="message", subject_id=str(message_id),
                 actor_type="staff" if actor_id else "system", actor_id=actor_id,
                 data={"previous": previous}, at=now)
    return item
