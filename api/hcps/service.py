"""The engagement profile: one view of an HCP across channels, and their timeline.

What a reader sees follows the commercial/medical firewall (COMPLIANCE.md):
- a medical inquiry's question and answer only for MSLs and medical reviewers (never for anyone
  who is also a rep); everyone else gets its metadata (reference, product, status, dates);
- an adverse event's narrative only for safety; everyone else gets reference, kind, status, dates;
- the text of a question the bot logged (``answer.query``) is withheld when its message carried an
  inquiry or an adverse event and the reader may not read that.
Every read is audited; a read that showed inquiry or AE content is audited as such, by reference.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation
from api.errors import Forbidden, InvalidInput, NotFound
from api.handoffs.models import Handoff, HandoffStatus
from api.hcps.models import ChannelIdentity, Hcp
from api.requests.models import RequestStatus, ServiceRequest
from api.safety.models import AdverseEvent, AdverseEventMessage, Consent, MedicalInquiry
from api.staff.models import StaffRole
from api.staff.service import StaffIdentity
from feedback import fatigue
from feedback.fatigue import FatiguePolicy
from feedback.models import (
    AnswerRating,
    FeedbackComment,
    Preference,
    PreferenceChange,
    SurveyResponse,
    SurveyStatus,
)
from knowledge.models import Answer

# Who may open a per-HCP profile. CX analysts work on redacted aggregates only; admins run the
# system, not the relationship; content admins manage the library.
PROFILE_ROLES = (StaffRole.rep, StaffRole.msl, StaffRole.medical_reviewer, StaffRole.safety)
WITHHELD = "[withheld: medical or safety content]"
MAX_PAGE = 200


# ---------------------------------------------------------------- who sees what


def reads_inquiries(ident: StaffIdentity) -> bool:
    """MSLs and medical reviewers read inquiry text; anyone who is a rep never does."""
    return StaffRole.rep not in ident.roles and bool(
        ident.roles & {StaffRole.msl, StaffRole.medical_reviewer})


def reads_adverse_events(ident: StaffIdentity) -> bool:
    return StaffRole.rep not in ident.roles and StaffRole.safety in ident.roles


def get(session: Session, hcp_id: str, ident: StaffIdentity) -> Hcp:
    """The HCP, if this reader's role and territory cover them."""
    hcp = session.get(Hcp, hcp_id)
    if hcp is None:
        raise NotFound(f"no HCP with id {hcp_id!r}")
    territorial = ident.roles & {StaffRole.rep, StaffRole.msl}
    central = ident.roles & {StaffRole.medical_reviewer, StaffRole.safety}
    if territorial and not central and ident.territory and hcp.territory and hcp.territory != ident.territory \
            and ident.id not in (hcp.assigned_rep_id, hcp.assigned_msl_id):
        raise Forbidden("this HCP is in another territory")
    return hcp


# ---------------------------------------------------------------- shared lookups


@dataclass
class _Scope:
    """Everything that identifies one HCP's rows across tables."""

    hcp: Hcp
    conversations: list[Conversation]
    subjects: set[str]
    addresses: set[tuple[str, str]]

    @property
    def conversation_ids(self) -> list[str]:
        return [c.id for c in self.conversations]


def _scope(session: Session, hcp: Hcp) -> _Scope:
    convs = list(session.execute(select(Conversation).where(Conversation.hcp_id == hcp.id)
                                 .order_by(Conversation.created_at)).scalars())
    addresses = {(c.channel, c.address) for c in convs if c.address}
    addresses |= {(ci.channel, ci.address) for ci in session.execute(
        select(ChannelIdentity).where(ChannelIdentity.hcp_id == hcp.id)).scalars()}
    subjects = {f"hcp:{hcp.id}"} | {f"{ch}:{addr}" for ch, addr in addresses}
    return _Scope(hcp, convs, subjects, addresses)


def _consent_rows(session: Session, scope: _Scope) -> list[Consent]:
    clauses = [Consent.hcp_id == scope.hcp.id]
    clauses += [(Consent.channel == ch) & (Consent.address == addr) for ch, addr in scope.addresses]
    return list(session.execute(select(Consent).where(or_(*clauses)).order_by(Consent.id)).scalars())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _protected_messages(session: Session, message_ids: set[int]) -> tuple[set[int], set[int]]:
    """(messages that carried a medical inquiry, messages that carried an adverse event)."""
    if not message_ids:
        return set(), set()
    mi = {m for m in session.execute(select(MedicalInquiry.message_id)
                                     .where(MedicalInquiry.message_id.in_(message_ids))).scalars() if m}
    ae = set(session.execute(select(AdverseEventMessage.message_id)
                             .where(AdverseEventMessage.message_id.in_(message_ids))).scalars())
    return mi, ae


# ---------------------------------------------------------------- profile


@dataclass
class Profile:
    hcp: dict[str, Any]
    channels: list[dict[str, Any]]
    preferences: dict[str, dict[str, Any]]
    consent: list[dict[str, Any]]
    open_service_requests: list[dict[str, Any]]
    handoffs: list[dict[str, Any]]
    medical_inquiries: list[dict[str, Any]]
    adverse_events: list[dict[str, Any]]
    feedback: dict[str, Any]
    viewer: dict[str, Any] = field(default_factory=dict)
    contact_rules: dict[str, Any] = field(default_factory=dict)


def effective_preferences(session: Session, scope: _Scope) -> dict[str, dict[str, Any]]:
    """Current value per preference: the HCP's own profile wins over one kept for an address
    before they were identified; among equals the newest."""
    rows = session.execute(select(Preference).where(
        or_(Preference.hcp_id == scope.hcp.id, Preference.subject.in_(scope.subjects)))).scalars()
    own = f"hcp:{scope.hcp.id}"
    best: dict[str, Preference] = {}
    for row in rows:
        cur = best.get(row.name)
        if cur is None or ((row.subject == own, row.updated_at) > (cur.subject == own, cur.updated_at)):
            best[row.name] = row
    return {name: {"value": r.value, "updated_at": _iso(r.updated_at), "updated_by": r.updated_by}
            for name, r in sorted(best.items())}


def effective_consent(rows: Iterable[Consent]) -> list[dict[str, Any]]:
    """The latest consent per channel address and purpose (the consent table is append-only)."""
    latest: dict[tuple[str, str, str], Consent] = {}
    for row in rows:
        latest[(row.channel, row.address, row.purpose)] = row
    return [{"channel": r.channel, "address": r.address, "purpose": r.purpose, "status": r.action,
             "since": _iso(r.at), "source": r.source, "message_id": r.message_id}
            for _, r in sorted(latest.items())]


def _inquiry_view(mi: MedicalInquiry, full: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"id": mi.id, "reference": mi.reference, "product": mi.product, "status": mi.status,
                           "channel": mi.channel, "conversation_id": mi.conversation_id,
                           "created_at": _iso(mi.created_at), "answered_at": _iso(mi.answered_at),
                           "closed_at": _iso(mi.closed_at)}
    if full:
        row.update(text=mi.text, response=mi.response, reasons=list(mi.reasons or []))
    return row


def _ae_view(ae: AdverseEvent, full: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"id": ae.id, "reference": ae.reference, "kind": ae.kind, "status": ae.status,
                           "channel": ae.channel, "conversation_id": ae.conversation_id,
                           "day0_at": _iso(ae.day0_at), "legal_hold": ae.legal_hold}
    if full:
        row.update(raw_text=ae.raw_text, seriousness=ae.seriousness, products=list(ae.products or []),
                   due_at=_iso(ae.due_at), missing_criteria=ae.missing_criteria)
    return row


def _audit_read(session: Session, ident: StaffIdentity, hcp: Hcp, now: datetime, what: str,
                inquiries: list[str], events: list[str]) -> None:
    audit.record(session, action=f"hcp.{what}_viewed", subject_type="hcp", subject_id=hcp.id,
                 actor_type="staff", actor_id=ident.id, data={"roles": sorted(ident.roles)}, at=now)
    if inquiries:
        audit.record(session, action="medical_inquiry.viewed", subject_type="hcp", subject_id=hcp.id,
                     actor_type="staff", actor_id=ident.id,
                     data={"references": inquiries, "where": f"engagement {what}"}, at=now)
    if events:
        audit.record(session, action="adverse_event.viewed", subject_type="hcp", subject_id=hcp.id,
                     actor_type="staff", actor_id=ident.id,
                     data={"references": events, "where": f"engagement {what}"}, at=now)


def profile(session: Session, hcp_id: str, ident: StaffIdentity, *, now: datetime,
            fatigue_policy: FatiguePolicy | None = None) -> Profile:
    hcp = get(session, hcp_id, ident)
    scope = _scope(session, hcp)
    cids = scope.conversation_ids
    channels = [{"channel": ci.channel, "address": ci.address, "since": _iso(ci.created_at)}
                for ci in session.execute(select(ChannelIdentity).where(ChannelIdentity.hcp_id == hcp.id)
                                          .order_by(ChannelIdentity.created_at)).scalars()]
    requests = session.execute(
        select(ServiceRequest).where(ServiceRequest.hcp_id == hcp.id,
                                     ServiceRequest.status.in_((RequestStatus.open, RequestStatus.in_progress)))
        .order_by(ServiceRequest.sla_due_at)).scalars()
    handoffs = session.execute(select(Handoff).where(Handoff.hcp_id == hcp.id)
                               .order_by(Handoff.created_at.desc()).limit(20)).scalars()
    mi_full, ae_full = reads_inquiries(ident), reads_adverse_events(ident)
    inquiries = list(session.execute(select(MedicalInquiry).where(MedicalInquiry.hcp_id == hcp.id)
                                     .order_by(MedicalInquiry.created_at.desc())).scalars())
    events = list(session.execute(select(AdverseEvent).where(AdverseEvent.hcp_id == hcp.id)
                                  .order_by(AdverseEvent.day0_at.desc())).scalars())
    result = Profile(
        hcp={"id": hcp.id, "name": hcp.name, "specialty": hcp.specialty, "licence_id": hcp.licence_id,
             "country": hcp.country, "territory": hcp.territory, "verification_status": hcp.verification_status,
             "assigned_rep_id": hcp.assigned_rep_id, "assigned_msl_id": hcp.assigned_msl_id,
             "created_at": _iso(hcp.created_at), "conversations": len(cids)},
        channels=channels,
        preferences=effective_preferences(session, scope),
        consent=effective_consent(_consent_rows(session, scope)),
        open_service_requests=[
            {"id": r.id, "reference": r.reference, "kind": r.kind, "status": r.status, "team": r.team,
             "product": r.product, "created_at": _iso(r.created_at), "sla_due_at": _iso(r.sla_due_at)}
            for r in requests],
        handoffs=[{"id": h.id, "reference": h.reference, "target": h.target, "reason": h.reason,
                   "status": h.status, "claimed_by": h.claimed_by, "outcome": h.outcome,
                   "created_at": _iso(h.created_at), "closed_at": _iso(h.closed_at),
                   "open": h.status in (HandoffStatus.queued, HandoffStatus.claimed)} for h in handoffs],
        medical_inquiries=[_inquiry_view(mi, mi_full) for mi in inquiries],
        adverse_events=[_ae_view(ae, ae_full) for ae in events],
        feedback=feedback_summary(session, scope),
        viewer={"reads_inquiry_text": mi_full, "reads_adverse_event_text": ae_full},
        contact_rules=contact_rules(session, hcp, scope, fatigue_policy or FatiguePolicy(), now),
    )
    _audit_read(session, ident, hcp, now, "profile",
                [mi.reference for mi in inquiries] if mi_full else [],
                [ae.reference for ae in events] if ae_full else [])
    return result


def contact_rules(session: Session, hcp: Hcp, scope: _Scope, policy: FatiguePolicy,
                  now: datetime) -> dict[str, Any]:
    """What the fatigue guard applies to business-initiated messages for this HCP right now."""
    stated = scope_frequency(effective_preferences(session, scope))
    cap = policy.cap_for(stated)
    market = next((c.market for c in reversed(scope.conversations) if c.market), None) or hcp.country
    sent = 0
    if scope.conversations:
        sent = len(fatigue.sent_times(session, scope.conversations[-1], now - cap.window))
    return {"frequency_cap": {"messages": cap.messages, "window_days": cap.window.days,
                              "source": "stated" if stated and cap != policy.default_cap else "company default",
                              "sent_in_window": sent},
            "quiet_hours": policy.quiet_hours, "timezone": policy.timezone_for(market).key,
            "in_quiet_hours_until": _iso(fatigue.quiet_until(policy, market, now))}


def scope_frequency(preferences: dict[str, dict[str, Any]]) -> str | None:
    value = preferences.get("frequency", {}).get("value")
    return str(value) if value else None


def feedback_summary(session: Session, scope: _Scope) -> dict[str, Any]:
    mine = or_(SurveyResponse.hcp_id == scope.hcp.id, SurveyResponse.subject.in_(scope.subjects))
    surveys = list(session.execute(select(SurveyResponse).where(mine)).scalars())
    csat = [s.score for s in surveys if s.kind == "csat" and s.score is not None]
    nps = sorted((s for s in surveys if s.kind == "nps" and s.score is not None),
                 key=lambda s: s.answered_at or s.asked_at)
    ratings = list(session.execute(select(AnswerRating.helpful).where(
        or_(AnswerRating.hcp_id == scope.hcp.id, AnswerRating.subject.in_(scope.subjects)))).scalars())
    comments = list(session.execute(select(FeedbackComment.category, FeedbackComment.created_at).where(
        or_(FeedbackComment.hcp_id == scope.hcp.id, FeedbackComment.subject.in_(scope.subjects)))).all())
    by_category: dict[str, int] = {}
    for category, _at in comments:
        by_category[category] = by_category.get(category, 0) + 1
    return {
        "csat": {"answered": len(csat), "average": round(sum(csat) / len(csat), 2) if csat else None},
        "nps": {"answered": len(nps), "last_score": nps[-1].score if nps else None,
                "last_at": _iso(nps[-1].answered_at) if nps else None},
        "surveys_unanswered": sum(1 for s in surveys if s.status == SurveyStatus.asked),
        "answer_ratings": {"helpful": sum(1 for h in ratings if h), "not_helpful": sum(1 for h in ratings if not h)},
        "comments": {"count": len(comments), "by_category": dict(sorted(by_category.items())),
                     "last_at": _iso(max((at for _c, at in comments), default=None))},
    }


# ---------------------------------------------------------------- timeline


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    kind: str
    id: str
    conversation_id: str | None
    channel: str | None
    data: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.at.isoformat(timespec="microseconds"), self.kind, self.id)

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "id": self.id,
                "conversation_id": self.conversation_id, "channel": self.channel, "data": self.data}


@dataclass
class TimelinePage:
    hcp_id: str
    events: list[TimelineEvent]
    next_cursor: str | None


def encode_cursor(event: TimelineEvent) -> str:
    raw = json.dumps(list(event.key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, kind, ident = json.loads(raw)
        return (datetime.fromisoformat(at).isoformat(timespec="microseconds"), str(kind), str(ident))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInput("a malformed timeline cursor (use next_cursor from the previous page)") from exc


def _events(session: Session, scope: _Scope, ident: StaffIdentity) -> tuple[list[TimelineEvent], list[str],
                                                                            list[str]]:
    """Every event of this HCP, unordered, plus the references whose content was shown."""
    hcp_id, cids = scope.hcp.id, scope.conversation_ids
    channel_of = {c.id: c.channel for c in scope.conversations}
    out: list[TimelineEvent] = []
    for c in scope.conversations:
        out.append(TimelineEvent(c.created_at, "conversation", c.id, c.id, c.channel,
                                 {"state": c.state, "market": c.market}))
    answers = list(session.execute(select(Answer).where(Answer.conversation_id.in_(cids))).scalars()) if cids else []
    mi_msgs, ae_msgs = _protected_messages(session, {a.message_id for a in answers if a.message_id is not None})
    mi_full, ae_full = reads_inquiries(ident), reads_adverse_events(ident)
    for a in answers:
        hidden = (a.message_id in mi_msgs and not mi_full) or (a.message_id in ae_msgs and not ae_full)
        out.append(TimelineEvent(a.created_at, "question", a.id, a.conversation_id,
                                 channel_of.get(a.conversation_id or ""),
                                 {"decision": a.decision, "query": WITHHELD if hidden else a.query,
                                  "content_id": a.content_id, "content_version": a.content_version,
                                  "message_id": a.message_id, "score": round(a.score, 4)}))
    for r in session.execute(select(ServiceRequest).where(ServiceRequest.hcp_id == hcp_id)).scalars():
        out.append(TimelineEvent(r.created_at, "service_request", r.id, r.conversation_id, r.channel,
                                 {"reference": r.reference, "kind": r.kind, "status": r.status, "team": r.team,
                                  "product": r.product, "details": r.details, "sla_due_at": _iso(r.sla_due_at),
                                  "completed_at": _iso(r.completed_at), "message_id": r.message_id}))
    for h in session.execute(select(Handoff).where(Handoff.hcp_id == hcp_id)).scalars():
        out.append(TimelineEvent(h.created_at, "handoff", h.id, h.conversation_id, channel_of.get(h.conversation_id),
                                 {"reference": h.reference, "target": h.target, "reason": h.reason,
                                  "status": h.status, "claimed_by": h.claimed_by, "claimed_at": _iso(h.claimed_at),
                                  "outcome": h.outcome, "closed_at": _iso(h.closed_at),
                                  "contact_preference": h.contact_preference}))
    shown_mi: list[str] = []
    for mi in session.execute(select(MedicalInquiry).where(MedicalInquiry.hcp_id == hcp_id)).scalars():
        out.append(TimelineEvent(mi.created_at, "medical_inquiry", mi.id, mi.conversation_id, mi.channel,
                                 _inquiry_view(mi, mi_full)))
        if mi_full:
            shown_mi.append(mi.reference)
    shown_ae: list[str] = []
    for ae in session.execute(select(AdverseEvent).where(AdverseEvent.hcp_id == hcp_id)).scalars():
        out.append(TimelineEvent(ae.day0_at, "adverse_event", ae.id, ae.conversation_id, ae.channel,
                                 _ae_view(ae, ae_full)))
        if ae_full:
            shown_ae.append(ae.reference)
    subjects = scope.subjects
    for rating in session.execute(select(AnswerRating).where(
            or_(AnswerRating.hcp_id == hcp_id, AnswerRating.subject.in_(subjects)))).scalars():
        out.append(TimelineEvent(rating.created_at, "answer_rating", rating.id, rating.conversation_id,
                                 channel_of.get(rating.conversation_id),
                                 {"answer_id": rating.answer_id, "helpful": rating.helpful, "reason": rating.reason,
                                  "message_id": rating.message_id}))
    for s in session.execute(select(SurveyResponse).where(
            or_(SurveyResponse.hcp_id == hcp_id, SurveyResponse.subject.in_(subjects)))).scalars():
        out.append(TimelineEvent(s.asked_at, "survey", s.id, s.conversation_id, channel_of.get(s.conversation_id),
                                 {"survey": s.kind, "status": s.status, "score": s.score,
                                  "answered_at": _iso(s.answered_at), "service_request_id": s.service_request_id}))
    for cm in session.execute(select(FeedbackComment).where(
            or_(FeedbackComment.hcp_id == hcp_id, FeedbackComment.subject.in_(subjects)))).scalars():
        out.append(TimelineEvent(cm.created_at, "comment", cm.id, cm.conversation_id,
                                 channel_of.get(cm.conversation_id),
                                 {"category": cm.category, "text": cm.text, "message_id": cm.message_id}))
    for pc in session.execute(select(PreferenceChange).where(
            or_(PreferenceChange.hcp_id == hcp_id, PreferenceChange.subject.in_(subjects)))).scalars():
        out.append(TimelineEvent(pc.at, "preference_change", str(pc.id), pc.conversation_id,
                                 channel_of.get(pc.conversation_id or ""),
                                 {"name": pc.name, "old": pc.old_value, "new": pc.new_value,
                                  "actor_type": pc.actor_type, "actor_id": pc.actor_id, "source": pc.source,
                                  "message_id": pc.message_id}))
    for cs in _consent_rows(session, scope):
        out.append(TimelineEvent(cs.at, "consent_change", str(cs.id), None, cs.channel,
                                 {"purpose": cs.purpose, "action": cs.action, "source": cs.source,
                                  "address": cs.address, "message_id": cs.message_id}))
    return out, shown_mi, shown_ae


def timeline(session: Session, hcp_id: str, ident: StaffIdentity, *, now: datetime, limit: int = 50,
             cursor: str | None = None) -> TimelinePage:
    """Newest first; ``next_cursor`` continues after the last event of this page."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1-{MAX_PAGE}")
    after = decode_cursor(cursor) if cursor else None
    hcp = get(session, hcp_id, ident)
    events, shown_mi, shown_ae = _events(session, _scope(session, hcp), ident)
    events.sort(key=lambda e: e.key, reverse=True)
    if after is not None:
        events = [e for e in events if e.key < after]
    page = events[:limit]
    page_mi = {e.data.get("reference") for e in page if e.kind == "medical_inquiry"}
    page_ae = {e.data.get("reference") for e in page if e.kind == "adverse_event"}
    _audit_read(session, ident, hcp, now, "timeline", [r for r in shown_mi if r in page_mi],
                [r for r in shown_ae if r in page_ae])
    return TimelinePage(hcp.id, page, encode_cursor(page[-1]) if len(events) > limit else None)
