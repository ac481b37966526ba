"""The HCP profile card a staff member sees beside a handoff: who the HCP is, their open requests,
recent feedback, medical inquiries (metadata only for reps) and the count of adverse events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation
from api.handoffs.schemas import ProfileCardRead
from api.hcps.models import Hcp
from api.safety import firewall
from api.staff.service import StaffIdentity


def profile_card(session: Session, conv: Conversation, ident: StaffIdentity, now: datetime) -> ProfileCardRead:
    """Who the HCP is and what is open for them. Medical inquiries: for reps the metadata only
    (reference, status, date), never the text; for MSLs and medical reviewers the text too (audited)."""
    from api.requests.models import RequestStatus, ServiceRequest
    from api.safety.models import AdverseEvent, MedicalInquiry
    from feedback import service as feedback
    from feedback.models import AnswerRating, FeedbackComment, SurveyResponse, SurveyStatus

    hcp = session.get(Hcp, conv.hcp_id) if conv.hcp_id else None
    mine = (ServiceRequest.hcp_id == conv.hcp_id) if conv.hcp_id else (ServiceRequest.conversation_id == conv.id)
    requests = session.execute(
        select(ServiceRequest).where(mine, ServiceRequest.status.in_((RequestStatus.open, RequestStatus.in_progress)))
        .order_by(ServiceRequest.sla_due_at).limit(20)).scalars()
    subject = feedback.subject_for(conv)
    scores = session.execute(
        select(SurveyResponse).where(SurveyResponse.subject == subject, SurveyResponse.status == SurveyStatus.answered)
        .order_by(SurveyResponse.answered_at.desc()).limit(5)).scalars()
    ratings = session.execute(select(AnswerRating).where(AnswerRating.subject == subject)
                              .order_by(AnswerRating.created_at.desc()).limit(5)).scalars()
    comments = session.execute(select(FeedbackComment).where(FeedbackComment.subject == subject)
                               .order_by(FeedbackComment.created_at.desc()).limit(5)).scalars()
    recent: list[dict[str, Any]] = (
        [{"kind": s.kind, "score": s.score, "at": s.answered_at} for s in scores]
        + [{"kind": "answer_rating", "helpful": r.helpful, "reason": r.reason, "at": r.created_at} for r in ratings]
        + [{"kind": "comment", "category": c.category, "text": c.text, "at": c.created_at} for c in comments])
    recent.sort(key=lambda f: f["at"], reverse=True)
    whose_mi = (MedicalInquiry.hcp_id == conv.hcp_id) if conv.hcp_id else (MedicalInquiry.conversation_id == conv.id)
    medical = firewall.sees_medical_content(ident)
    inquiries = []
    for mi in session.execute(select(MedicalInquiry).where(whose_mi)
                              .order_by(MedicalInquiry.created_at.desc()).limit(10)).scalars():
        row: dict[str, Any] = {"reference": mi.reference, "status": mi.status, "created_at": mi.created_at}
        if medical:
            row.update(text=mi.text, product=mi.product, response=mi.response)
        inquiries.append(row)
    if medical and inquiries:
        audit.record(session, action="medical_inquiry.viewed", subject_type="conversation", subject_id=conv.id,
                     actor_type="staff", actor_id=ident.id,
                     data={"references": [i["reference"] for i in inquiries], "where": "handoff profile card"},
                     at=now)
    whose_ae = (AdverseEvent.hcp_id == conv.hcp_id) if conv.hcp_id else (AdverseEvent.conversation_id == conv.id)
    ae_count = len(session.execute(select(AdverseEvent.id).where(whose_ae)).all())
    return ProfileCardRead(
        identified=hcp is not None, name=hcp.name if hcp else None, specialty=hcp.specialty if hcp else None,
        country=hcp.country if hcp else None, territory=hcp.territory if hcp else None,
        verification=hcp.verification_status if hcp else "not identified", channel=conv.channel,
        market=conv.market, preferences=feedback.profile(session, conv),
        open_requests=[{"reference": r.reference, "kind": r.kind, "status": r.status, "team": r.team,
                        "sla_due_at": r.sla_due_at} for r in requests],
        recent_feedback=recent[:8], inquiries=inquiries, adverse_events=ae_count,
    )
