"""A staff member's own words in a handoff, screened before they go (``api.safety.staff_screen``).

``reply`` decides in one transaction: a reply with a blocking finding is refused (nothing is sent;
``ReplyOutcome.refused`` carries the findings and the approved content that fits, for the console);
an overridable finding goes out when the writer gives a reason (audited ``staff_reply.override``);
an adverse event the writer mentions opens a safety case as if reported — whether or not the reply
is sent, so the caller must commit even when it then raises ``refused``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation, Direction, Message
from api.conversations.outbound import check_staff_text, send_staff_text
from api.errors import InvalidInput
from api.handoffs import service as handoffs
from api.handoffs.content_search import ContentChoice, search_content
from api.handoffs.errors import ReplyBlocked
from api.hcps.models import Hcp
from api.safety import staff_screen
from api.safety.products import Catalogue, load_catalogue
from api.safety.screen import SafetyScreen
from api.safety.service import record_staff_mention
from api.staff.service import StaffIdentity

HCP_CONTEXT = 50  # the HCP's messages the screen reads (personal data given, products named)
MIN_REASON = 10
MAX_REASON = 500
SUGGESTIONS = 3


@dataclass(frozen=True)
class ReplyScreener:
    """What the staff reply screen needs: the products file and the AE screen the bot uses."""

    catalogue: Catalogue
    safety: SafetyScreen | None
    default_market: str

    def warm_up(self) -> None:
        """Load the AE model now (the app's own safety hook does this at start)."""
        warm = getattr(self.safety, "warm_up", None)
        if callable(warm):
            warm()

    def screen(self, session: Session, conv: Conversation, ident: StaffIdentity,
               text: str) -> staff_screen.StaffScreen:
        from knowledge.library import Status
        from knowledge.models import ContentVersion

        said = session.execute(
            select(Message.body).where(Message.conversation_id == conv.id, Message.direction == Direction.inbound)
            .order_by(Message.id.desc()).limit(HCP_CONTEXT)
        ).scalars().all()
        hcp = session.get(Hcp, conv.hcp_id) if conv.hcp_id else None
        approved = session.execute(select(ContentVersion.body).where(
            ContentVersion.is_current.is_(True), ContentVersion.status == Status.approved)).scalars().all()
        return staff_screen.screen_staff_reply(
            text, role=ident.roles, hcp_texts=[b for b in reversed(said) if b], products=self.catalogue,
            market=conv.market or self.default_market, approved=list(approved), safety=self.safety,
            known_names=[n for n in (hcp.name if hcp else None, ident.name) if n],
        )


@lru_cache(maxsize=8)
def _catalogue(path: Path) -> Catalogue:
    return load_catalogue(path)


def screener_for(settings: Any) -> ReplyScreener:
    """The screener of a running app: the products file of its library and its AE model."""
    from api.safety.classifier import build_screen

    products = settings.library_path / "products.yaml"
    path = products if products.exists() else None
    return ReplyScreener(_catalogue(path) if path else Catalogue(),
                         build_screen(settings.resolved_model_dir, path), settings.default_market)


@dataclass
class ReplyOutcome:
    message: Message | None
    screen: staff_screen.StaffScreen
    adverse_event_reference: str | None = None
    refused: ReplyBlocked | None = None
    overridden: list[str] = field(default_factory=list)

    def findings(self, text: str) -> list[dict[str, Any]]:
        return [f.as_dict(text) for f in self.screen.findings]


_WORD = re.compile(r"[a-z0-9]{3,}")


def _suggestions(session: Session, conv: Conversation, products: tuple[str, ...], text: str, *, now: datetime,
                 default_market: str) -> list[ContentChoice]:
    """Approved items about the reply's products that may go to this HCP today, those sharing the
    most words with the reply first."""
    words = set(_WORD.findall(text.lower()))
    found: dict[str, ContentChoice] = {}
    for product in products:
        for c in search_content(session, conv, product, now=now, default_market=default_market, limit=200):
            if c.sendable:
                found.setdefault(c.content_id, c)

    def overlap(c: ContentChoice) -> int:
        return len(words & set(_WORD.findall(f"{c.title} {c.excerpt}".lower())))

    return sorted(found.values(), key=lambda c: (-overlap(c), c.content_id))[:SUGGESTIONS]


def _refusal(screen: staff_screen.StaffScreen, text: str, suggestions: list[ContentChoice], *,
             commercial: bool, reason_refused: bool) -> ReplyBlocked:
    kinds = [staff_screen.KIND_LABELS[k].lower() for k in screen.kinds if k in staff_screen.BLOCKING]
    if not screen.overridable:
        how = ("reps cannot override an off-label block: rephrase, send approved content, or transfer the "
               "question to Medical Information")
    else:
        how = "rephrase, send approved content, or send it anyway with a reason (recorded)"
    lead = "not sent, even with a reason" if reason_refused else "not sent"
    return ReplyBlocked(
        f"Your reply was {lead}: {', '.join(kinds)}. Your text is kept; {how}.",
        detail={"findings": [f.as_dict(text) for f in screen.findings],
                "overridable": screen.overridable, "commercial": commercial,
                "suggestions": [c.as_dict() for c in suggestions]},
    )


def _decide(session: Session, conv: Conversation, ident: StaffIdentity, now: datetime, *, text: str,
            screener: ReplyScreener, override_reason: str | None, subject_type: str, subject_id: str,
            reference: str) -> tuple[str, ReplyOutcome, dict[str, Any]]:
    """Screen ``text`` and decide: refused (``outcome.refused``, audited) or may go. Returns the
    checked text, the outcome and the audit data shared by the records that follow."""
    text = check_staff_text(text)
    reason = (override_reason or "").strip()
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the override reason is longer than {MAX_REASON} characters")
    screen = screener.screen(session, conv, ident, text)
    audit_base = {"reference": reference, "conversation_id": conv.id, "chars": len(text),
                  "findings": [{"kind": f.kind, "detail": f.detail, "span": list(f.span) if f.span else None}
                               for f in screen.findings]}
    outcome = ReplyOutcome(message=None, screen=screen)
    if screen.blocked:
        if reason and screen.overridable and len(reason) < MIN_REASON:
            raise InvalidInput(f"give a reason of at least {MIN_REASON} characters to send this reply anyway")
        if not (reason and screen.overridable):
            suggestions = _suggestions(session, conv, screen.products, text, now=now,
                                       default_market=screener.default_market)
            outcome.refused = _refusal(screen, text, suggestions, commercial=staff_screen.is_commercial(ident.roles),
                                       reason_refused=bool(reason))
            audit.record(session, action="staff_reply.blocked", subject_type=subject_type, subject_id=subject_id,
                         actor_type="staff", actor_id=ident.id,
                         data={**audit_base, "overridable": screen.overridable, "override_tried": bool(reason)},
                         at=now)
        else:
            outcome.overridden = [f.kind for f in screen.blocking]
            audit_base["reason"] = reason
    return text, outcome, audit_base


def _capture_adverse_event(session: Session, conv: Conversation, ident: StaffIdentity, now: datetime, text: str,
                           outcome: ReplyOutcome) -> None:
    """Captured whatever happens to the reply: a refused reply's mention is still a report."""
    if outcome.screen.adverse_event is None:
        return
    case, _created = record_staff_mention(session, conversation=conv, text=text, result=outcome.screen.adverse_event,
                                          staff_id=ident.id, now=now, message=outcome.message)
    outcome.adverse_event_reference = case.reference
    if outcome.refused is not None and isinstance(outcome.refused.detail, dict):
        outcome.refused.detail["adverse_event_reference"] = case.reference


def reply(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime, *, text: str,
          screener: ReplyScreener, override_reason: str | None = None) -> ReplyOutcome:
    """Screen and (unless refused) send the holder's reply; see the module docstring."""
    handoff = handoffs.get_for_staff(session, handoff_id, ident)
    handoffs._require_holder(session, handoff, ident)
    conv = session.get(Conversation, handoff.conversation_id)
    assert conv is not None
    text, outcome, audit_base = _decide(session, conv, ident, now, text=text, screener=screener,
                                        override_reason=override_reason, subject_type="handoff",
                                        subject_id=handoff.id, reference=handoff.reference)
    if outcome.refused is None:
        outcome.message = send_staff_text(session, conv, staff_id=ident.id, text=text, now=now,
                                          purpose="handoff-reply",
                                          sender_label=handoffs.speaker_label(handoff, ident))
        if outcome.overridden:
            audit.record(session, action="staff_reply.override", subject_type="handoff", subject_id=handoff.id,
                         actor_type="staff", actor_id=ident.id,
                         data={**audit_base, "message_id": outcome.message.id}, at=now)
    _capture_adverse_event(session, conv, ident, now, text, outcome)
    return outcome


def screen_answer(session: Session, conv: Conversation, ident: StaffIdentity, now: datetime, *, text: str,
                  screener: ReplyScreener, override_reason: str | None, subject_type: str, subject_id: str,
                  reference: str) -> ReplyOutcome:
    """The same screen for free text sent by another path (a medical inquiry's answer): decides,
    audits and captures an AE (without a message link: the answer is sent in the caller's next
    transaction). The caller commits, raises ``refused`` if set, then sends."""
    text, outcome, audit_base = _decide(session, conv, ident, now, text=text, screener=screener,
                                        override_reason=override_reason, subject_type=subject_type,
                                        subject_id=subject_id, reference=reference)
    if outcome.refused is None and outcome.overridden:
        audit.record(session, action="staff_reply.override", subject_type=subject_type, subject_id=subject_id,
                     actor_type="staff", actor_id=ident.id, data=audit_base, at=now)
    _capture_adverse_event(session, conv, ident, now, text, outcome)
    return outcome


def send_reply(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime, *, text: str,
               screener: ReplyScreener, override_reason: str | None = None) -> Message:
    """``reply`` for callers that want the sent message or an exception (ReplyBlocked). A caller
    whose transaction rolls back on the exception loses a refused reply's AE case: the console
    route uses ``reply`` and commits before raising."""
    outcome = reply(session, handoff_id, ident, now, text=text, screener=screener, override_reason=override_reason)
    if outcome.refused is not None:
        raise outcome.refused
    assert outcome.message is not None
    return outcome.message
