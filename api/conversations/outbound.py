"""Messages staff send into a conversation (rep/MSL replies, medical answers), and their delivery.

Free text is the staff member's own words (attributed and audited); approved content goes out
verbatim through the same send-time gate the bot uses. Either way the message and its outbox
entry are one transaction, and delivery happens after the commit
(``api.pipeline.delivery.deliver_after_commit``).
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.orm import Session

from api.audit import service as audit
from api.content import render
from api.conversations.models import Conversation, Message, SenderType
from api.conversations.service import add_outbound
from api.errors import InvalidInput

MAX_STAFF_TEXT = 4000
# A tag, not a comparison ("x < 5"): replies are plain text on every channel.
_TAGS = (r"a|abbr|b|body|br|button|code|div|em|embed|font|form|h[1-6]|head|hr|html|i|iframe|img|input|li|link"
         r"|meta|object|ol|p|pre|script|select|small|span|strong|style|sub|sup|svg|table|tbody|td|textarea|th|tr|u|ul")
_MARKUP = re.compile(rf"<\s*/?\s*({_TAGS})\b[^<>]*>|<!--|&lt;\s*/?\s*({_TAGS})\b", re.IGNORECASE)


def check_staff_text(text: str | None) -> str:
    """The reply as it would be sent, or InvalidInput saying plainly what to change."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput("the message is empty: type a reply first")
    if len(text) > MAX_STAFF_TEXT:
        raise InvalidInput(f"the message is {len(text)} characters; the limit is {MAX_STAFF_TEXT}. "
                           "Shorten it (nothing was sent)")
    markup = _MARKUP.search(text)
    if markup:
        raise InvalidInput(f"replies are sent as plain text: remove the HTML markup ({markup.group(0)[:40]}); "
                           "nothing was sent")
    return text


def send_staff_text(session: Session, conv: Conversation, *, staff_id: str, text: str, now: datetime,
                    purpose: str, sender_label: str | None = None) -> Message:
    text = check_staff_text(text)
    msg = add_outbound(session, conv, text=text, now=now, sender_type=SenderType.staff, sender_id=staff_id,
                       sender_label=sender_label)
    audit.record(session, action="staff.message_sent", subject_type="conversation", subject_id=conv.id,
                 actor_type="staff", actor_id=staff_id,
                 data={"message_id": msg.id, "purpose": purpose, "kind": "free_text", "chars": len(text)}, at=now)
    return msg


def send_staff_content(session: Session, conv: Conversation, *, staff_id: str, content_id: str, version: int,
                       now: datetime, default_market: str, purpose: str, sender_label: str | None = None) -> Message:
    """One approved item, verbatim, if it may go to this HCP today (else ContentGated, nothing queued)."""
    sendable = render(session, conv, content_id, version, default_market=default_market, today=now.date())
    msg = add_outbound(session, conv, text=sendable.text(), now=now, sender_type=SenderType.staff,
                       sender_id=staff_id, content_id=sendable.content_id, content_version=sendable.version,
                       approval_code=sendable.approval_code, sender_label=sender_label)
    audit.record(session, action="staff.message_sent", subject_type="conversation", subject_id=conv.id,
                 actor_type="staff", actor_id=staff_id,
                 data={"message_id": msg.id, "purpose": purpose, "kind": "approved_content",
                       "content_id": sendable.content_id, "version": sendable.version,
                       "approval_code": sendable.approval_code}, at=now)
    return msg
