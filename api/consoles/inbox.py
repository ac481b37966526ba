"""The Inbox console for reps, MSLs and medical reviewers: the handoff queue, claim, the live
conversation, the HCP card, replies (own words or approved content), transfer, hand back, close.

Pages live at /console/inbox…; the JSON the pages' script uses at /api/staff/inbox….
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.consoles.render import render
from api.conversations.models import Conversation, Message
from api.conversations.outbound import MAX_STAFF_TEXT
from api.cursors import MessageCursor
from api.db import unit_of_work
from api.errors import ContentGated
from api.handoffs import assign, attention, screening
from api.handoffs import service as handoffs
from api.handoffs.content_search import search_content
from api.handoffs.hours import staff_hours
from api.handoffs.models import Handoff, HandoffStatus, HandoffTarget
from api.handoffs.profile import profile_card
from api.handoffs.schemas import (
    AssignmentRead,
    AttentionHandoffRead,
    AttentionRead,
    CloseCreate,
    ColleagueRead,
    ContentChoiceRead,
    ContentChoicesRead,
    ContentSendCreate,
    ConversationStateRead,
    FindingRead,
    HandoffDetailRead,
    HandoffRead,
    MessagesRead,
    PresenceCreate,
    QueueRead,
    ReplyCreate,
    ScreenedSentRead,
    SentRead,
    StaffMessageRead,
    TransferCreate,
)
from api.hcps.models import Hcp
from api.pipeline.delivery import deliver_after_commit
from api.safety import firewall
from api.staff import service as staff_service
from api.staff.auth import Staff, api_routes
from api.staff.models import Presence, StaffRole
from api.staff.service import StaffIdentity
from api.state import app_state

router = APIRouter()

Inbox = Annotated[StaffIdentity, Staff(StaffRole.rep, StaffRole.msl, StaffRole.medical_reviewer)]
DUE_SOON = timedelta(hours=1)
RELAY_PATH = "/api/staff/conversations/{conversation_id}/events"


def sla_badge(h: Handoff, now: datetime) -> str:
    if h.status not in (HandoffStatus.queued, HandoffStatus.claimed):
        return "done"
    if h.sla_due_at <= now:
        return "overdue"
    return "due-soon" if h.sla_due_at - now <= DUE_SOON else "ok"


def _read(session: Session, h: Handoff, conv: Conversation, hcp: Hcp | None, ident: StaffIdentity,
          now: datetime, summary: str | None = None, *, facts: attention.RowFacts | None = None) -> HandoffRead:
    read = HandoffRead.build(
        h, summary=summary if summary is not None else handoffs.summary_for(session, h, conv, ident),
        sla=sla_badge(h, now), requested_for_me=h.requested_staff_id == ident.id,
        claimed_by_name=handoffs.staff_name(session, h.claimed_by) if h.claimed_by else None,
        channel=conv.channel, hcp_name=hcp.name if hcp else None, hcp_specialty=hcp.specialty if hcp else None,
        hcp_territory=hcp.territory if hcp else None, offered_to_me=h.offered_to == ident.id,
        offered_to_name=handoffs.staff_name(session, h.offered_to) if h.offered_to else None,
    )
    if facts is not None:
        read = read.model_copy(update={
            "preview": facts.preview, "preview_from": facts.preview_from, "preview_withheld": facts.preview_withheld,
            "waiting_since": facts.waiting_since, "waiting_seconds": facts.waiting_seconds,
            "opted_out": facts.opted_out})
    return read


def _read_one(session: Session, h: Handoff, ident: StaffIdentity, now: datetime) -> HandoffRead:
    conv = session.get(Conversation, h.conversation_id)
    assert conv is not None
    hcp = session.get(Hcp, h.hcp_id) if h.hcp_id else None
    return _read(session, h, conv, hcp, ident, now)


def _queue(session: Session, ident: StaffIdentity, now: datetime, policy: assign.AssignPolicy) -> QueueRead:
    q = handoffs.list_queue(session, ident)
    facts = attention.row_facts_many(session, [(e.handoff, e.conversation) for e in [*q.queued, *q.mine]], ident, now)
    queued = [_read(session, e.handoff, e.conversation, e.hcp, ident, now, e.summary, facts=facts[e.handoff.id])
              for e in q.queued]
    user = staff_service.get(session, ident.id)
    return QueueRead(
        queued=[h for h in queued if not h.offered_to_me],
        mine=[_read(session, e.handoff, e.conversation, e.hcp, ident, now, e.summary, facts=facts[e.handoff.id])
              for e in q.mine],
        offered=[h for h in queued if h.offered_to_me],
        assignment=AssignmentRead(auto_assign=policy.enabled, presence=user.presence,
                                  load=assign.load(session, ident.id), capacity=assign.capacity(user, policy)),
    )


def _detail(session: Session, handoff_id: str, ident: StaffIdentity, now: datetime) -> HandoffDetailRead:
    h = handoffs.get_for_staff(session, handoff_id, ident)
    conv = session.get(Conversation, h.conversation_id)
    assert conv is not None
    card = profile_card(session, conv, ident, now)
    audit.record(session, action="handoff.viewed", subject_type="handoff", subject_id=h.id, actor_type="staff",
                 actor_id=ident.id, data={"reference": h.reference,
                                          "medical_content_shown": firewall.sees_medical_content(ident)}, at=now)
    return HandoffDetailRead(
        handoff=_read(session, h, conv, session.get(Hcp, h.hcp_id) if h.hcp_id else None, ident, now,
                      facts=attention.row_facts(session, h, conv, ident, now)),
        card=card,
        colleagues=[ColleagueRead(**c) for c in handoffs.transfer_options(session, ident)],
        medical_content_withheld=not firewall.sees_medical_content(ident),
    )


# ---------------------------------------------------------------- pages


@router.get("/console/inbox", response_class=HTMLResponse)
def inbox_page(request: Request, ident: Inbox) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        queue = _queue(session, ident, state.clock.now(), assign.assign_policy(state.settings))
    return render(request, "inbox.html", ident, queue=queue, presences=[str(p) for p in Presence],
                  teams=sorted(handoffs.targets_for(ident)),
                  territory=ident.territory)


@router.get("/console/inbox/{handoff_id}", response_class=HTMLResponse)
def handoff_page(request: Request, handoff_id: str, ident: Inbox) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        detail = _detail(session, handoff_id, ident, now)
        conv = session.get(Conversation, detail.handoff.conversation_id)
        assert conv is not None
        messages = [StaffMessageRead(**m.__dict__) for m in handoffs.transcript(session, conv, ident, now=now)]
    relay = any(path == RELAY_PATH for path, _route in api_routes(request.app))
    return render(request, "inbox_detail.html", ident, d=detail, h=detail.handoff, card=detail.card,
                  messages=messages, last_id=messages[-1].id if messages else 0, relay=relay,
                  outcomes=handoffs.OUTCOMES, teams=[str(t) for t in HandoffTarget],
                  withheld_text=firewall.WITHHELD_NOTE, max_reply_chars=MAX_STAFF_TEXT)


@router.post("/console/inbox/{handoff_id}/claim")
def claim_form(request: Request, handoff_id: str, ident: Inbox) -> Response:
    _claim(request, handoff_id, ident)
    return RedirectResponse(f"/console/inbox/{handoff_id}", status_code=303)


# ---------------------------------------------------------------- JSON for the pages' script


@router.get("/api/staff/inbox")
def queue_json(request: Request, ident: Inbox) -> QueueRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        return _queue(session, ident, state.clock.now(), assign.assign_policy(state.settings))


@router.get("/api/staff/attention")
def attention_json(request: Request, ident: Inbox) -> AttentionRead:
    """The nav badge and the page title count on every console page (console.js polls it)."""
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        a = attention.attention(session, ident)
    return AttentionRead(queued=a.queued, mine=a.mine,
                         recent=[AttentionHandoffRead(id=i, reference=r, target=t) for i, r, t in a.recent])


@router.get("/api/staff/inbox/{handoff_id}")
def detail_json(request: Request, handoff_id: str, ident: Inbox) -> HandoffDetailRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        return _detail(session, handoff_id, ident, state.clock.now())


@router.get("/api/staff/inbox/{handoff_id}/messages")
def messages_json(request: Request, handoff_id: str, ident: Inbox,
                  after: MessageCursor = 0) -> MessagesRead:
    """Polling fallback of the live relay: the same message shape and the same withholding rule."""
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        h = handoffs.get_for_staff(session, handoff_id, ident)
        conv = session.get(Conversation, h.conversation_id)
        assert conv is not None
        rows = handoffs.transcript(session, conv, ident, after=after, now=state.clock.now())
        return MessagesRead(
            messages=[StaffMessageRead(**m.__dict__) for m in rows],
            state=ConversationStateRead(state=conv.state, assigned_staff_id=conv.assigned_staff_id,
                                        handoff_status=h.status, claimed_by=h.claimed_by),
        )


def _claim(request: Request, handoff_id: str, ident: StaffIdentity) -> HandoffRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        h = handoffs.claim(session, handoff_id, ident, now, assign.assign_policy(state.settings))
        read = _read_one(session, h, ident, now)
    deliver_after_commit(state, read.conversation_id)
    return read


@router.post("/api/staff/inbox/{handoff_id}/claim")
def claim_json(request: Request, handoff_id: str, ident: Inbox) -> HandoffRead:
    """Claim from the shared queue; accepting an offer is the same claim."""
    return _claim(request, handoff_id, ident)


@router.post("/api/staff/inbox/{handoff_id}/decline")
def decline_json(request: Request, handoff_id: str, ident: Inbox) -> HandoffRead:
    """Say no to an offer: it moves to the next person who fits (or waits in the shared queue)."""
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        handoffs.get_for_staff(session, handoff_id, ident)
        h = assign.decline(session, handoff_id, ident.id, assign.assign_policy(state.settings), now)
        return _read_one(session, h, ident, now)


@router.post("/api/staff/presence")
def presence_json(request: Request, body: PresenceCreate, ident: Inbox) -> AssignmentRead:
    """Online (offers come to you), away or offline (they go to colleagues; your offers move on)."""
    state = app_state(request)
    policy = assign.assign_policy(state.settings)
    with unit_of_work(state.session_factory) as session:
        user = staff_service.get(session, ident.id)
        assign.set_presence(session, user, body.presence, policy, state.clock.now(), actor_id=ident.id)
        return AssignmentRead(auto_assign=policy.enabled, presence=user.presence,
                              load=assign.load(session, ident.id), capacity=assign.capacity(user, policy))


@router.post("/api/staff/inbox/{handoff_id}/release")
def release_json(request: Request, handoff_id: str, ident: Inbox) -> HandoffRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        return _read_one(session, handoffs.release(session, handoff_id, ident, now), ident, now)


@router.post("/api/staff/inbox/{handoff_id}/transfer")
def transfer_json(request: Request, handoff_id: str, body: TransferCreate, ident: Inbox) -> HandoffRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        h = handoffs.transfer(session, handoff_id, ident, now, to_target=body.to_target or None,
                              to_staff_id=body.to_staff_id or None, note=body.note,
                              hours=staff_hours(state.settings))
        read = _read_one(session, h, ident, now)
    deliver_after_commit(state, read.conversation_id)
    return read


@router.post("/api/staff/inbox/{handoff_id}/hand-back")
def hand_back_json(request: Request, handoff_id: str, ident: Inbox) -> HandoffRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        read = _read_one(session, handoffs.hand_back(session, handoff_id, ident, now), ident, now)
    deliver_after_commit(state, read.conversation_id)
    return read


@router.post("/api/staff/inbox/{handoff_id}/close")
def close_json(request: Request, handoff_id: str, body: CloseCreate, ident: Inbox) -> HandoffRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        now = state.clock.now()
        h = handoffs.close(session, handoff_id, ident, now, outcome=body.outcome, note=body.note)
        read = _read_one(session, h, ident, now)
    deliver_after_commit(state, read.conversation_id)
    return read


def _sent(session: Session, message_id: int) -> SentRead:
    msg = session.get(Message, message_id)
    assert msg is not None
    return SentRead(message=StaffMessageRead(id=msg.id, direction=msg.direction, sender_type=msg.sender_type,
                                             body=msg.body, approval_code=msg.approval_code,
                                             created_at=msg.created_at, withheld=False))


@router.post("/api/staff/inbox/{handoff_id}/reply")
def reply_json(request: Request, handoff_id: str, body: ReplyCreate, ident: Inbox) -> ScreenedSentRead:
    """Screened first (api.handoffs.screening): a refusal is 422 ``reply_blocked`` with the findings
    and fitting approved content, committed with its audit record and any AE case it opened."""
    state = app_state(request)
    screener = screening.screener_for(state.settings)
    with unit_of_work(state.session_factory) as session:
        outcome = screening.reply(session, handoff_id, ident, state.clock.now(), text=body.text,
                                  screener=screener, override_reason=body.override_reason)
        if outcome.refused is not None:
            refused = outcome.refused
        else:
            assert outcome.message is not None
            refused = None
            conv_id, message_id = outcome.message.conversation_id, outcome.message.id
            text = outcome.message.body
    if refused is not None:
        raise refused
    deliver_after_commit(state, conv_id)
    with state.session_factory() as session:
        sent = _sent(session, message_id)
    return ScreenedSentRead(message=sent.message, findings=[FindingRead(**f) for f in outcome.findings(text)],
                            adverse_event_reference=outcome.adverse_event_reference, overridden=outcome.overridden)


@router.get("/api/staff/inbox/{handoff_id}/content")
def content_search_json(request: Request, handoff_id: str, ident: Inbox,
                        q: Annotated[str, Query(max_length=200)] = "") -> ContentChoicesRead:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        h = handoffs.get_for_staff(session, handoff_id, ident)
        conv = session.get(Conversation, h.conversation_id)
        assert conv is not None
        found = search_content(session, conv, q, now=state.clock.now(),
                                        default_market=state.settings.default_market)
        return ContentChoicesRead(items=[ContentChoiceRead(**c.as_dict()) for c in found])


@router.post("/api/staff/inbox/{handoff_id}/content")
def content_send_json(request: Request, handoff_id: str, body: ContentSendCreate, ident: Inbox) -> SentRead:
    state = app_state(request)
    try:
        with unit_of_work(state.session_factory) as session:
            msg = handoffs.send_content(session, handoff_id, ident, state.clock.now(), content_id=body.content_id,
                                        version=body.version, default_market=state.settings.default_market)
            conv_id, message_id = msg.conversation_id, msg.id
    except ContentGated as exc:
        # Nothing was queued; the refused attempt is still a staff action on the record.
        with unit_of_work(state.session_factory) as session:
            audit.record(session, action="staff.content_gated", subject_type="handoff", subject_id=handoff_id,
                         actor_type="staff", actor_id=ident.id,
                         data={"content_id": body.content_id, "version": body.version, "reason": exc.message},
                         at=state.clock.now())
        raise
    deliver_after_commit(state, conv_id)
    with state.session_factory() as session:
        return _sent(session, message_id)
