"""CRM export: interactions, preferences and consent of identified HCPs as JSON lines.

The schema is documented in docs/crm-export.md. Every line is one record with a ``type``; ids
are stable (``<kind>:<row id>``) so a CRM upserts them, and the same window always gives the
same bytes. Only metadata leaves: no message text, no medical-inquiry question or answer, no
adverse-event narrative, no comment text, no service-request form answers (they are free text).
A record is in the window ``[since, until)`` when its last activity falls in it, so a request
opened last week and completed today is exported again today with its new status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation, Message
from api.errors import InvalidInput
from api.handoffs.models import Handoff
from api.hcps.models import ChannelIdentity, Hcp
from api.requests.models import ServiceRequest
from api.safety.models import AdverseEvent, Consent, MedicalInquiry
from feedback.models import AnswerRating, FeedbackComment, Preference, PreferenceChange, SurveyResponse
from knowledge.models import Answer

SCHEMA_VERSION = "crm-export/1"
RECORD_TYPES = ("hcp", "interaction", "preference", "preference_change", "consent", "consent_change")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _latest(*values: datetime | None) -> datetime:
    present = [v for v in values if v is not None]
    return max(present)


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise InvalidInput("the export window needs time-zone-aware times")
        if self.until <= self.since:
            raise InvalidInput("--until must be after --since")

    def holds(self, when: datetime | None) -> bool:
        return when is not None and self.since <= when < self.until


def _interaction(kind: str, row_id: str, hcp_id: str, *, channel: str | None, conversation_id: str | None,
                 occurred_at: datetime, updated_at: datetime, status: str | None,
                 attributes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "interaction", "id": f"{kind}:{row_id}", "hcp_id": hcp_id, "kind": kind, "channel": channel,
            "conversation_id": conversation_id, "occurred_at": _iso(occurred_at), "updated_at": _iso(updated_at),
            "status": status, "attributes": attributes}


def _interactions(session: Session, w: Window) -> Iterator[dict[str, Any]]:
    channel_of: dict[str, str] = {}
    # Conversations: one interaction per conversation, updated with its last message.
    last_msg = (select(Message.conversation_id, func.max(Message.created_at).label("last"),
                       func.count().label("n"))
                .group_by(Message.conversation_id).subquery())
    for conv, last, n in session.execute(
            select(Conversation, last_msg.c.last, last_msg.c.n)
            .outerjoin(last_msg, last_msg.c.conversation_id == Conversation.id)
            .where(Conversation.hcp_id.is_not(None))).all():
        channel_of[conv.id] = conv.channel
        updated = _latest(conv.created_at, last)
        if w.holds(updated):
            yield _interaction("conversation", conv.id, conv.hcp_id, channel=conv.channel, conversation_id=conv.id,
                               occurred_at=conv.created_at, updated_at=updated, status=conv.state,
                               attributes={"market": conv.market, "messages": int(n or 0)})
    for a, hcp_id, channel in session.execute(
            select(Answer, Conversation.hcp_id, Conversation.channel)
            .join(Conversation, Conversation.id == Answer.conversation_id)
            .where(Conversation.hcp_id.is_not(None), Answer.created_at >= w.since,
                   Answer.created_at < w.until)).all():
        yield _interaction("question", a.id, str(hcp_id), channel=channel, conversation_id=a.conversation_id,
                           occurred_at=a.created_at, updated_at=a.created_at, status=a.decision,
                           attributes={"content_id": a.content_id, "content_version": a.content_version})
    for r in session.execute(select(ServiceRequest).where(ServiceRequest.hcp_id.is_not(None))).scalars():
        updated = _latest(r.created_at, r.completed_at)
        if w.holds(updated) and r.hcp_id:
            yield _interaction("service_request", r.id, r.hcp_id, channel=r.channel, conversation_id=r.conversation_id,
                               occurred_at=r.created_at, updated_at=updated, status=r.status,
                               attributes={"reference": r.reference, "request_kind": r.kind, "team": r.team,
                                           "product": r.product, "sla_due_at": _iso(r.sla_due_at),
                                           "completed_at": _iso(r.completed_at)})
    for h in session.execute(select(Handoff).where(Handoff.hcp_id.is_not(None))).scalars():
        updated = _latest(h.created_at, h.claimed_at, h.closed_at)
        if w.holds(updated) and h.hcp_id:
            yield _interaction("handoff", h.id, h.hcp_id, channel=channel_of.get(h.conversation_id),
                               conversation_id=h.conversation_id, occurred_at=h.created_at, updated_at=updated,
                               status=h.status,
                               attributes={"reference": h.reference, "target": h.target, "reason": h.reason,
                                           "claimed_by": h.claimed_by, "outcome": h.outcome,
                                           "contact_preference": h.contact_preference,
                                           "closed_at": _iso(h.closed_at)})
    for mi in session.execute(select(MedicalInquiry).where(MedicalInquiry.hcp_id.is_not(None))).scalars():
        updated = _latest(mi.created_at, mi.answered_at, mi.closed_at)
        if w.holds(updated) and mi.hcp_id:
            # Metadata only (commercial/medical firewall): never the question or the answer.
            yield _interaction("medical_inquiry", mi.id, mi.hcp_id, channel=mi.channel,
                               conversation_id=mi.conversation_id, occurred_at=mi.created_at, updated_at=updated,
                               status=mi.status, attributes={"reference": mi.reference, "product": mi.product,
                                                             "answered_at": _iso(mi.answered_at)})
    for ae in session.execute(select(AdverseEvent).where(AdverseEvent.hcp_id.is_not(None))).scalars():
        updated = _latest(ae.created_at, ae.updated_at)
        if w.holds(updated) and ae.hcp_id:
            # That a case exists and its reference (for pharmacovigilance follow-up), nothing more.
            yield _interaction("adverse_event", ae.id, ae.hcp_id, channel=ae.channel,
                               conversation_id=ae.conversation_id, occurred_at=ae.day0_at, updated_at=updated,
                               status=ae.status, attributes={"reference": ae.reference, "case_kind": ae.kind})
    for s in session.execute(select(SurveyResponse).where(SurveyResponse.hcp_id.is_not(None))).scalars():
        updated = _latest(s.asked_at, s.answered_at)
        if w.holds(updated) and s.hcp_id:
            yield _interaction("survey", s.id, s.hcp_id, channel=channel_of.get(s.conversation_id),
                               conversation_id=s.conversation_id, occurred_at=s.asked_at, updated_at=updated,
                               status=s.status, attributes={"survey": s.kind, "score": s.score,
                                                            "service_request_id": s.service_request_id})
    for rt in session.execute(select(AnswerRating).where(AnswerRating.hcp_id.is_not(None))).scalars():
        updated = _latest(rt.created_at, rt.updated_at)
        if w.holds(updated) and rt.hcp_id:
            yield _interaction("answer_rating", rt.id, rt.hcp_id, channel=channel_of.get(rt.conversation_id),
                               conversation_id=rt.conversation_id, occurred_at=rt.created_at, updated_at=updated,
                               status=None, attributes={"answer_id": rt.answer_id, "helpful": rt.helpful,
                                                        "reason": rt.reason})
    for cm in session.execute(select(FeedbackComment).where(
            FeedbackComment.hcp_id.is_not(None), FeedbackComment.created_at >= w.since,
            FeedbackComment.created_at < w.until)).scalars():
        if cm.hcp_id:
            yield _interaction("comment", cm.id, cm.hcp_id, channel=channel_of.get(cm.conversation_id),
                               conversation_id=cm.conversation_id, occurred_at=cm.created_at,
                               updated_at=cm.created_at, status=None, attributes={"category": cm.category})


def records(session: Session, window: Window) -> list[dict[str, Any]]:
    """Every record of the window, in a stable order (type, HCP, time, id)."""
    out: list[dict[str, Any]] = list(_interactions(session, window))
    for pc in session.execute(select(PreferenceChange).where(
            PreferenceChange.hcp_id.is_not(None), PreferenceChange.at >= window.since,
            PreferenceChange.at < window.until)).scalars():
        out.append({"type": "preference_change", "id": f"preference_change:{pc.id}", "hcp_id": pc.hcp_id,
                    "name": pc.name, "old_value": pc.old_value, "new_value": pc.new_value,
                    "changed_by": {"actor_type": pc.actor_type, "actor_id": pc.actor_id, "source": pc.source},
                    "conversation_id": pc.conversation_id, "message_id": pc.message_id, "at": _iso(pc.at)})
    for cs in session.execute(select(Consent).where(Consent.hcp_id.is_not(None), Consent.at >= window.since,
                                                    Consent.at < window.until)).scalars():
        out.append({"type": "consent_change", "id": f"consent_change:{cs.id}", "hcp_id": cs.hcp_id,
                    "channel": cs.channel, "purpose": cs.purpose, "action": cs.action, "source": cs.source,
                    "message_id": cs.message_id, "at": _iso(cs.at)})
    active = {r["hcp_id"] for r in out}
    touched = set(session.execute(select(Hcp.id).where(or_(
        (Hcp.created_at >= window.since) & (Hcp.created_at < window.until),
        (Hcp.erased_at >= window.since) & (Hcp.erased_at < window.until)))).scalars())
    out += _hcp_records(session, active | touched, window)
    for r in out:
        r["schema"] = SCHEMA_VERSION
    order = {t: i for i, t in enumerate(RECORD_TYPES)}
    out.sort(key=lambda r: (order[r["type"]], r.get("hcp_id") or r["id"],
                            r.get("updated_at") or r.get("at") or "", r["id"]))
    return out


def _hcp_records(session: Session, hcp_ids: set[str], window: Window) -> list[dict[str, Any]]:
    """The account, and the current preferences and consent, of every HCP with activity."""
    if not hcp_ids:
        return []
    out: list[dict[str, Any]] = []
    ids = sorted(hcp_ids)
    channels: dict[str, list[str]] = {}
    for hcp_id, channel in session.execute(select(ChannelIdentity.hcp_id, ChannelIdentity.channel)
                                           .where(ChannelIdentity.hcp_id.in_(ids))).all():
        channels.setdefault(str(hcp_id), []).append(channel)
    for hcp in session.execute(select(Hcp).where(Hcp.id.in_(ids))).scalars():
        if hcp.erased_at is not None:
            # The CRM must erase its copy too.
            out.append({"type": "hcp", "id": f"hcp:{hcp.id}", "hcp_id": hcp.id, "erased": True,
                        "erased_at": _iso(hcp.erased_at)})
            continue
        out.append({"type": "hcp", "id": f"hcp:{hcp.id}", "hcp_id": hcp.id, "erased": False, "name": hcp.name,
                    "specialty": hcp.specialty, "licence_id": hcp.licence_id, "country": hcp.country,
                    "territory": hcp.territory, "verification_status": hcp.verification_status,
                    "assigned_rep_id": hcp.assigned_rep_id, "assigned_msl_id": hcp.assigned_msl_id,
                    "channels": sorted(set(channels.get(hcp.id, []))), "created_at": _iso(hcp.created_at)})
    for pref in session.execute(select(Preference).where(Preference.hcp_id.in_(ids),
                                                         Preference.subject.like("hcp:%"))).scalars():
        if pref.updated_at < window.until:
            out.append({"type": "preference", "id": f"preference:{pref.hcp_id}:{pref.name}", "hcp_id": pref.hcp_id,
                        "name": pref.name, "value": pref.value, "updated_at": _iso(pref.updated_at)})
    latest: dict[tuple[str, str, str], Consent] = {}
    for cs in session.execute(select(Consent).where(Consent.hcp_id.in_(ids), Consent.at < window.until)
                              .order_by(Consent.id)).scalars():
        latest[(cs.hcp_id or "", cs.channel, cs.purpose)] = cs
    for (hcp_id, channel, purpose), cs in latest.items():
        out.append({"type": "consent", "id": f"consent:{hcp_id}:{channel}:{purpose}", "hcp_id": hcp_id,
                    "channel": channel, "purpose": purpose, "status": cs.action, "since": _iso(cs.at),
                    "source": cs.source})
    return out


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
