"""Plant one HCP with a row in every table that can hold something about them, through the real
services (the knowledge ``answer`` row is the one written directly: answering needs a loaded index).

Every free-text field carries a canary so a test can search the whole database for it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from api.channels.whatsapp import service as wa
from api.conversations import service as conversations
from api.conversations.models import Message
from api.handoffs.service import open_handoff
from api.hcps.models import ChannelIdentity, Hcp, VerificationStatus
from api.requests import service as requests
from api.requests.models import ServiceRequestNote
from api.safety import service as safety
from api.safety.screen import ScreenResult
from api.staff import notes
from api.staff.models import StaffUser
from feedback import service as feedback
from knowledge.models import Answer

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@dataclass
class Planted:
    hcp_id: str
    name: str
    phone: str
    email: str
    licence: str
    free_text: str      # a phrase only this HCP wrote (comments, requests, questions)
    ae_text: str        # in the adverse event's source message
    mi_text: str        # in the medical inquiry
    whatsapp_conversation_id: str
    webchat_conversation_id: str
    adverse_event_id: str
    ae_message_ids: list[int]
    medical_inquiry_id: str
    service_request_id: str
    handoff_id: str
    answer_id: str
    message_ids: list[int] = field(default_factory=list)

    @property
    def personal(self) -> list[str]:
        """Identifiers and free text that must not survive an erasure outside the legal hold."""
        return [self.name, self.phone, self.email, self.licence, self.free_text, self.mi_text]


def plant_hcp(session: Session, *, territory: str = "north", start: datetime = T0) -> Planted:
    tag = uuid.uuid4().hex[:8]
    name = f"Zebedee Quillfeather{tag}"
    phone = f"+4477009{int(tag, 16) % 10**6:06d}"
    email = f"zq{tag}@clinic-canary.example"
    licence = f"GMC{int(tag, 16) % 10**7:07d}"
    free_text = f"canary-freetext-{tag}"
    ae_text = f"canary-ae-{tag}"
    mi_text = f"canary-mi-{tag}"
    now = start
    hcp = Hcp(name=name, specialty="cardiology", licence_id=licence, country="GB",
              verification_status=VerificationStatus.verified, territory=territory, created_at=now)
    session.add(hcp)
    session.flush()
    address = f"whatsapp:{phone}"
    session.add(ChannelIdentity(channel="whatsapp", address=address, hcp_id=hcp.id, created_at=now))
    session.flush()
    wconv = wa.conversation_for(session, address, now=now, market="GB")
    wconv.hcp_id = hcp.id
    safety.record_consent(session, channel="whatsapp", address=address, hcp_id=hcp.id, purpose="service",
                          action="opt_in", source="keyword", message_id=None, now=now)
    webconv, _token = conversations.create_webchat(session, now=now, market="GB")
    webconv.hcp_id = hcp.id
    session.flush()
    ids: list[int] = []

    def inbound(conv: object, text: str, minutes: int) -> int:
        msg = conversations.persist_inbound(session, conv, text=text,  # type: ignore[arg-type]
                                            now=start + timedelta(minutes=minutes)).message
        ids.append(msg.id)
        return msg.id

    intro = inbound(webconv, f"Hello, I am Dr {name}, licence {licence}, email {email}, phone {phone}", 1)
    reply = conversations.add_outbound(session, webconv, text=f"Welcome Dr {name}!", now=start + timedelta(minutes=2),
                                       in_reply_to=intro)
    ids.append(reply.id)
    q_id = inbound(webconv, f"What is the dose of cardiovex? {free_text}", 3)
    answer = Answer(conversation_id=webconv.id, message_id=q_id, query=f"What is the dose of cardiovex? {free_text}",
                    market="GB", audience="hcp", verified=True, decision="answer", content_id="cv-dose",
                    content_version=1, score=0.91, candidates=[], gated_count=0,
                    created_at=start + timedelta(minutes=3))
    session.add(answer)
    session.flush()
    feedback.rate_answer(session, webconv, answer_id=answer.id, helpful=False, message_id=q_id,
                         now=start + timedelta(minutes=4))
    pref_msg = inbound(webconv, "Please contact me only once a month, by email", 5)
    feedback.set_preference(session, webconv, name="frequency", value="monthly", message_id=pref_msg,
                            now=start + timedelta(minutes=5))
    feedback.set_preference(session, webconv, name="best_time", value=f"after 6 pm {free_text}",
                            message_id=pref_msg, now=start + timedelta(minutes=5))
    comment_msg = inbound(webconv, f"Too many messages, {name} here, {free_text}", 6)
    feedback.add_comment(session, webconv, text=f"Too many messages, {name} here, call {phone} {free_text}",
                         message_id=comment_msg, now=start + timedelta(minutes=6))
    req_msg = inbound(webconv, "I need samples", 7)
    request = requests.create_request(session, webconv, kind="samples",
                                      details={"product": "cardiovex", "address": f"1 Canary Lane {free_text}",
                                               "contact": f"{name} {phone} {email}"},
                                      product="cardiovex", message_id=req_msg, now=start + timedelta(minutes=7))
    # Staff are working it: an internal note that names the person.
    staff = StaffUser(email=f"rep-{tag}@halcyon.example", name=f"Rep {tag}", password_hash="x", roles=["rep"],
                      active=True, available=True, created_at=start)
    session.add(staff)
    session.flush()
    session.add(ServiceRequestNote(service_request_id=request.id, staff_id=staff.id,
                                   text=f"Called {name} on {phone}: {free_text}", created_at=start))
    feedback.ask_survey(session, webconv, kind="csat", now=start + timedelta(minutes=7),
                        service_request_id=request.id)
    score_msg = inbound(webconv, "4", 8)
    feedback.record_score(session, webconv, score=4, message_id=score_msg, now=start + timedelta(minutes=8))
    mi_msg = inbound(wconv, f"Can I give cardiovex to a 9 year old? {mi_text}", 10)
    mi_out = safety.apply(session, conversation=wconv, message=session.get_one(Message, mi_msg),
                          result=ScreenResult(off_label=True, products=("cardiovex",),
                                              off_label_reasons=("population",)),
                          now=start + timedelta(minutes=10))
    ae_msg = inbound(wconv, f"My patient had a seizure after cardiovex, {ae_text}, I am {name} on {phone}", 12)
    ae_out = safety.apply(session, conversation=wconv, message=session.get_one(Message, ae_msg),
                          result=ScreenResult(adverse_event=True, ae_categories=("side_effect",), ae_score=0.99,
                                              products=("cardiovex",), serious=True, serious_terms=("seizure",)),
                          now=start + timedelta(minutes=12))
    handoff = open_handoff(session, webconv, target="rep", reason="hcp_request", now=start + timedelta(minutes=14))
    assert mi_out.medical_inquiry_id and ae_out.adverse_event_id
    # Staff-typed reasons and notes (kept in staff_note; the audit holds only their id and hash).
    typed = start + timedelta(minutes=15)
    for subject_type, subject_id, text in (
            ("hcp", hcp.id, f"licence {licence} did not match the register for {name}; {free_text}"),
            ("handoff", handoff.id, f"called {name} on {phone} about {free_text}"),
            ("medical_inquiry", mi_out.medical_inquiry_id, f"{mi_text}; answer emailed to {email}"),
            ("adverse_event", ae_out.adverse_event_id, f"reporter {name} ({phone}) confirmed the seizure")):
        notes.keep(session, text, subject_type=subject_type, subject_id=subject_id, field="reason",
                   author_id=None, at=typed)
    session.flush()
    return Planted(hcp_id=hcp.id, name=name, phone=phone, email=email, licence=licence, free_text=free_text,
                   ae_text=ae_text, mi_text=mi_text, whatsapp_conversation_id=wconv.id,
                   webchat_conversation_id=webconv.id, adverse_event_id=ae_out.adverse_event_id,
                   ae_message_ids=[ae_msg], medical_inquiry_id=mi_out.medical_inquiry_id,
                   service_request_id=request.id, handoff_id=handoff.id, answer_id=answer.id, message_ids=ids)

