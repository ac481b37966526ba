"""The handoff service: staff hours, honest acknowledgements, the queue a staff member sees, and the
firewall on summaries and transcripts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations import service as conversations
from api.conversations.models import Conversation, Message
from api.handoffs import service as handoffs
from api.handoffs.errors import NotHolder
from api.handoffs.hours import DEFAULT_HOURS, StaffHours, parse_windows
from api.handoffs.models import Handoff
from api.handoffs.profile import profile_card
from api.hcps.models import Hcp
from api.rasa.actions import give_score, request_handoff
from api.rasa.actions.protocol import ActionContext
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.settings import Settings
from api.staff.models import StaffUser
from api.staff.service import StaffIdentity
from feedback import service as feedback
from feedback.models import SurveyResponse
from tests.bot.conftest import tracker
from tests.consoles.handoff_factory import MONDAY_MORNING, SATURDAY, mark_screened


def _conv(session: Session, now: datetime = MONDAY_MORNING, hcp: Hcp | None = None) -> Conversation:
    conv, _ = conversations.create_webchat(session, now=now, market="GB")
    if hcp is not None:
        conv.hcp_id = hcp.id
    return conv


def _hcp(session: Session, **kw: object) -> Hcp:
    row = Hcp(name=f"Dr {uuid.uuid4().hex[:6]}", specialty="cardiology", country="GB", created_at=MONDAY_MORNING,
              **kw)
    session.add(row)
    session.flush()
    return row


def _staff(session: Session, *roles: str, territory: str | None = None, available: bool = True) -> StaffIdentity:
    user = StaffUser(email=f"{uuid.uuid4().hex[:10]}@halcyon.example", name=f"Sam {uuid.uuid4().hex[:4]}",
                     password_hash="x", roles=list(roles), territory=territory, active=True, available=available,
                     created_at=MONDAY_MORNING)
    session.add(user)
    session.flush()
    return StaffIdentity(id=user.id, email=user.email, name=user.name, roles=frozenset(roles),
                         territory=territory, session_id="s", csrf_token="c")


def _nobody_available(session: Session, role: str) -> None:
    for user in session.execute(select(StaffUser)).scalars():
        if role in user.roles:
            user.available = False
    session.flush()


# ---------------------------------------------------------------- staff hours


def test_staff_hours_know_when_the_next_person_is_at_work() -> None:
    hours = DEFAULT_HOURS  # Mon-Fri 08:00-18:00 Europe/London
    assert hours.is_open(MONDAY_MORNING)
    assert not hours.is_open(SATURDAY)
    assert hours.next_open(SATURDAY) == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # GMT in winter
    friday_evening = datetime(2026, 6, 26, 17, 30, tzinfo=UTC)  # 18:30 BST
    assert hours.next_open(friday_evening) == datetime(2026, 6, 29, 7, 0, tzinfo=UTC)  # 08:00 BST
    assert hours.format(datetime(2026, 11, 23, 8, 0, tzinfo=UTC)) == "08:00 GMT on Mon 23 Nov"


def test_staff_hours_with_several_windows_and_a_week_that_wraps() -> None:
    hours = StaffHours.parse("Mon-Fri 08:00-18:00; Sat 09:00-12:00", "Europe/Berlin")
    assert hours.is_open(SATURDAY)  # 11:00 in Berlin
    assert hours.next_open(datetime(2026, 11, 21, 11, 30, tzinfo=UTC)) == datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    wrap = parse_windows("Fri-Mon 10:00-24:00")
    assert sorted({w.weekday for w in wrap}) == [0, 4, 5, 6]


@pytest.mark.parametrize("spec", ["", "Mon-Fri 9-5", "Mon-Fry 08:00-18:00", "Mon 18:00-08:00", "Mon 08:00-25:00"])
def test_unreadable_staff_hours_are_refused_with_a_reason(spec: str) -> None:
    with pytest.raises(ValueError, match=r"staff hours|day|time|closes"):
        parse_windows(spec)
    with pytest.raises(ValueError):
        Settings(staff_hours=spec)


def test_an_unknown_staff_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        Settings(staff_timezone="Mars/Olympus_Mons")


# ---------------------------------------------------------------- opening a handoff


def test_out_of_hours_the_hcp_is_told_when_a_person_will_reply_and_offered_a_callback(session: Session) -> None:
    conv = _conv(session, SATURDAY)
    handoff = handoffs.open_handoff(session, conv, target="rep", reason="hcp_request", now=SATURDAY)
    opens = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert handoff.sla_due_at == opens + handoffs.SLA["rep"]  # the SLA counts from the opening time
    draft = handoffs.reply_draft(session, handoff, now=SATURDAY)
    assert "not at work right now" in draft.text
    assert "08:00 GMT on Mon 23 Nov" in draft.text and "12:00 GMT on Mon 23 Nov" in draft.text
    assert f"reference {handoff.reference}" in draft.text
    assert [b.payload for b in draft.buttons] == ['/handoff_contact{"via": "callback"}',
                                                  '/handoff_contact{"via": "email"}',
                                                  '/handoff_contact{"via": "chat"}']


def test_in_hours_with_nobody_available_the_hcp_is_told_honestly(session: Session) -> None:
    _nobody_available(session, "msl")
    conv = _conv(session)
    handoff = handoffs.open_handoff(session, conv, target="msl", reason="hcp_request", now=MONDAY_MORNING)
    assert handoff.sla_due_at == MONDAY_MORNING + timedelta(hours=24)
    draft = handoffs.reply_draft(session, handoff, now=MONDAY_MORNING)
    assert "nobody is free right now" in draft.text
    assert "medical science liaison" in draft.text and "09:00 GMT on Tue 24 Nov" in draft.text
    assert {b.title for b in draft.buttons} == {"Call me back", "Email me instead", "Wait for a reply here"}
    queued = session.execute(select(AuditEvent).where(AuditEvent.subject_id == handoff.id,
                                                      AuditEvent.action == "handoff.queued")).scalar_one()
    assert queued.data["availability"] == "nobody_available"


def test_in_hours_with_someone_available_the_plain_acknowledgement_offers_no_alternatives(session: Session) -> None:
    _staff(session, "rep")
    conv = _conv(session)
    handoff = handoffs.open_handoff(session, conv, target="rep", reason="hcp_request", now=MONDAY_MORNING)
    draft = handoffs.reply_draft(session, handoff, now=MONDAY_MORNING)
    assert draft.buttons == []
    assert draft.text.startswith("Thank you. I've asked a colleague from our customer team")
    assert "13:00 GMT on Mon 23 Nov" in draft.text


def test_the_hcps_own_rep_or_msl_is_requested(session: Session) -> None:
    rep, msl = _staff(session, "rep"), _staff(session, "msl")
    hcp = _hcp(session, assigned_rep_id=rep.id, assigned_msl_id=msl.id)
    to_rep = handoffs.open_handoff(session, _conv(session, hcp=hcp), target="rep", reason="r", now=MONDAY_MORNING)
    to_msl = handoffs.open_handoff(session, _conv(session, hcp=hcp), target="msl", reason="r", now=MONDAY_MORNING)
    to_mi = handoffs.open_handoff(session, _conv(session, hcp=hcp), target="medical_information", reason="r",
                                  now=MONDAY_MORNING)
    assert (to_rep.requested_staff_id, to_msl.requested_staff_id, to_mi.requested_staff_id) == (rep.id, msl.id, None)


def test_the_bot_action_out_of_hours_offers_callback_and_email(session: Session, settings: Settings) -> None:
    conv = _conv(session, SATURDAY)
    ctx = ActionContext(session=session, settings=settings, conversation=conv, now=SATURDAY,
                        tracker=tracker("can I talk to my msl", intent="request_human",
                                        entities=[{"entity": "handoff_target", "value": "msl"}]))
    (response,) = request_handoff.run(ctx).responses
    assert "not at work right now" in response["custom"]["text"]
    assert response["custom"]["handoff"].startswith("H-")
    assert {b["title"] for b in response["custom"]["buttons"]} >= {"Call me back", "Email me instead"}


def test_the_hcps_contact_choice_is_recorded_and_audited(session: Session) -> None:
    conv = _conv(session, SATURDAY)
    handoff = handoffs.open_handoff(session, conv, target="rep", reason="hcp_request", now=SATURDAY)
    msg = conversations.persist_inbound(session, conv, text="Email me instead",
                                        payload='/handoff_contact{"via": "email"}', now=SATURDAY).message
    (reply,) = handoffs.answer_contact_choice(session, conv, msg, SATURDAY) or []
    assert "reply by email" in reply.text and handoff.reference in reply.text
    assert handoff.contact_preference == "email"
    event = session.execute(select(AuditEvent).where(AuditEvent.subject_id == handoff.id,
                                                     AuditEvent.action == "handoff.contact_preference")).scalar_one()
    assert event.data["via"] == "email" and event.actor_type == "hcp"
    other = conversations.persist_inbound(session, conv, text="hello", now=SATURDAY).message
    assert handoffs.answer_contact_choice(session, conv, other, SATURDAY) is None


def test_a_contact_choice_without_an_open_handoff_offers_a_person(session: Session) -> None:
    conv = _conv(session)
    msg = conversations.persist_inbound(session, conv, text="Call me back",
                                        payload='/handoff_contact{"via": "callback"}', now=MONDAY_MORNING).message
    (reply,) = handoffs.answer_contact_choice(session, conv, msg, MONDAY_MORNING) or []
    assert reply.buttons and reply.buttons[0].payload == "/request_human"


# ---------------------------------------------------------------- the queue


def test_the_queue_shows_the_roles_target_and_territory_requested_first_then_by_sla(session: Session) -> None:
    territory = f"T-{uuid.uuid4().hex[:6]}"
    me = _staff(session, "rep", territory=territory)
    mine_hcp = _hcp(session, territory=territory, assigned_rep_id=me.id)
    local_hcp = _hcp(session, territory=territory)
    far_hcp = _hcp(session, territory="elsewhere")
    later = MONDAY_MORNING + timedelta(minutes=5)
    earliest = handoffs.open_handoff(session, _conv(session, hcp=local_hcp), target="rep", reason="r",
                                     now=MONDAY_MORNING - timedelta(hours=1))
    requested = handoffs.open_handoff(session, _conv(session, hcp=mine_hcp), target="rep", reason="r", now=later)
    anonymous = handoffs.open_handoff(session, _conv(session), target="rep", reason="r", now=MONDAY_MORNING)
    far = handoffs.open_handoff(session, _conv(session, hcp=far_hcp), target="rep", reason="r", now=MONDAY_MORNING)
    msl_only = handoffs.open_handoff(session, _conv(session, hcp=local_hcp), target="msl", reason="r",
                                     now=MONDAY_MORNING)
    ids = [e.handoff.id for e in handoffs.list_queue(session, me).queued]
    assert ids[0] == requested.id
    assert ids.index(earliest.id) < ids.index(anonymous.id)
    assert far.id not in ids and msl_only.id not in ids
    with pytest.raises(NotHolder, match="another territory"):
        handoffs.get_for_staff(session, far.id, me)
    with pytest.raises(NotHolder, match="another team"):
        handoffs.get_for_staff(session, msl_only.id, me)
    handoffs.claim(session, requested.id, me, later)
    queue = handoffs.list_queue(session, me)
    assert [e.handoff.id for e in queue.mine] == [requested.id]
    assert requested.id not in [e.handoff.id for e in queue.queued]


def test_medical_reviewers_work_the_medical_information_queue(session: Session) -> None:
    reviewer = _staff(session, "medical_reviewer")
    mi = handoffs.open_handoff(session, _conv(session), target="medical_information", reason="r", now=MONDAY_MORNING)
    rep_one = handoffs.open_handoff(session, _conv(session), target="rep", reason="r", now=MONDAY_MORNING)
    ids = [e.handoff.id for e in handoffs.list_queue(session, reviewer).queued]
    assert mi.id in ids and rep_one.id not in ids


# ---------------------------------------------------------------- firewall


def _with_medical_question(session: Session, conv: Conversation, canary: str) -> Message:
    hello = conversations.persist_inbound(session, conv, text="hello, about samples", now=MONDAY_MORNING).message
    msg = conversations.persist_inbound(session, conv, text=f"can I give cardiovex to a child {canary}",
                                        now=MONDAY_MORNING).message
    apply(session, conversation=conv, message=msg,
          result=ScreenResult(off_label=True, products=("cardiovex",), off_label_reasons=("population",)),
          now=MONDAY_MORNING)
    mark_screened(session, hello)
    mark_screened(session, msg)
    return msg


def test_a_transfer_to_the_reps_rewrites_the_summary_without_medical_content(session: Session) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    msl = _staff(session, "msl")
    conv = _conv(session)
    _with_medical_question(session, conv, canary)
    handoff = handoffs.open_handoff(session, conv, target="msl", reason="r", now=MONDAY_MORNING)
    assert canary in handoff.summary
    handoffs.claim(session, handoff.id, msl, MONDAY_MORNING)
    handoffs.transfer(session, handoff.id, msl, MONDAY_MORNING, to_target="rep")
    assert handoff.target == "rep" and handoff.status == "queued" and handoff.claimed_by is None
    assert canary not in handoff.summary and "not shown" in handoff.summary
    assert conv.state == "queued"


def test_reps_read_placeholders_and_msls_the_text_which_is_audited(session: Session) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    rep, msl = _staff(session, "rep"), _staff(session, "msl")
    conv = _conv(session)
    msg = _with_medical_question(session, conv, canary)
    answer = conversations.add_outbound(session, conv, text=f"bot reply about {canary}", now=MONDAY_MORNING,
                                        in_reply_to=msg.id)
    for m in session.execute(select(Message).where(Message.conversation_id == conv.id)).scalars():
        m.status = "sent" if m.direction == "out" else m.status
    session.flush()
    as_rep = {m.id: m for m in handoffs.transcript(session, conv, rep, now=MONDAY_MORNING)}
    assert as_rep[msg.id].withheld and as_rep[msg.id].body is None
    assert as_rep[answer.id].withheld  # the reply to it can echo it
    assert all(canary not in (m.body or "") for m in as_rep.values())
    as_msl = {m.id: m for m in handoffs.transcript(session, conv, msl, now=MONDAY_MORNING)}
    assert canary in (as_msl[msg.id].body or "") and not as_msl[msg.id].withheld
    viewed = session.execute(select(AuditEvent).where(AuditEvent.subject_id == conv.id,
                                                      AuditEvent.action == "conversation.medical_content_viewed")
                             ).scalar_one()
    assert viewed.actor_id == msl.id and msg.id in viewed.data["message_ids"]


def test_the_profile_card_gives_reps_inquiry_metadata_only(session: Session) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    rep, reviewer = _staff(session, "rep"), _staff(session, "medical_reviewer")
    hcp = _hcp(session, territory="north", verification_status="verified")
    conv = _conv(session, hcp=hcp)
    _with_medical_question(session, conv, canary)
    card = profile_card(session, conv, rep, MONDAY_MORNING)
    assert card.specialty == "cardiology" and card.territory == "north" and card.verification == "verified"
    (inquiry,) = card.inquiries
    assert set(inquiry) == {"reference", "status", "created_at"}
    assert canary not in repr(card.model_dump(mode="json"))
    full = profile_card(session, conv, reviewer, MONDAY_MORNING)
    assert canary in full.inquiries[0]["text"]


# ---------------------------------------------------------------- CSAT through Rasa's action


def test_csat_asked_on_close_is_recorded_by_rasas_give_score_action(session: Session, settings: Settings) -> None:
    rep = _staff(session, "rep")
    conv = _conv(session)
    handoff = handoffs.open_handoff(session, conv, target="rep", reason="r", now=MONDAY_MORNING)
    handoffs.claim(session, handoff.id, rep, MONDAY_MORNING)
    handoffs.close(session, handoff.id, rep, MONDAY_MORNING, outcome="resolved")
    question = session.execute(select(Message).where(Message.conversation_id == conv.id)
                               .order_by(Message.id.desc()).limit(1)).scalar_one()
    assert question.body == feedback.CSAT_QUESTIONS["handoff"]
    assert [b["title"] for b in question.buttons or []] == ["1", "2", "3", "4", "5"]
    ctx = ActionContext(session=session, settings=settings, conversation=conv, now=MONDAY_MORNING,
                        tracker=tracker('/give_score{"score": "4"}', intent="give_score",
                                        entities=[{"entity": "score", "value": "4"}]))
    give_score.run(ctx)
    survey = session.execute(select(SurveyResponse).where(SurveyResponse.conversation_id == conv.id,
                                                          SurveyResponse.kind == "csat")).scalar_one()
    assert (survey.kind, survey.score, survey.status) == ("csat", 4, "answered")
    assert session.get(Handoff, handoff.id).outcome == "resolved"  # type: ignore[union-attr]
