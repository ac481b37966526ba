"""The service-request desk: who works which request, legal status changes, notes, and the HCP
being told (with a CSAT question for that request) when staff close one."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.audit.models import AuditEvent
from api.channels.whatsapp.models import WhatsappSend
from api.conversations.models import Channel, Conversation, Message
from api.db import unit_of_work
from api.errors import Conflict, Forbidden, InvalidInput, NotFound
from api.hcps.models import Hcp
from api.rasa.actions import give_score
from api.rasa.actions.protocol import ActionContext
from api.requests import desk
from api.requests import service as requests
from api.requests.models import RequestStatus, ServiceRequest, ServiceRequestNote
from api.settings import Settings
from api.staff.service import StaffIdentity
from feedback.models import SurveyResponse
from tests.bot.conftest import tracker
from tests.consoles.handoff_factory import MONDAY_MORNING
from tests.consoles.test_handoffs_service import _conv, _hcp, _staff

NOW = MONDAY_MORNING


def _request(session: Session, conv: Conversation, kind: str = "samples", *, team: str | None = None,
             details: dict[str, str] | None = None) -> ServiceRequest:
    return requests.create_request(session, conv, kind=kind, details=details or {"sample_quantity": "3 boxes"},
                                   product="cardiovex", now=NOW, team=team)


def _whatsapp_conv(session: Session, *, last_inbound_hours_ago: float) -> Conversation:
    conv = Conversation(channel=Channel.whatsapp, address=f"whatsapp:+4477{uuid.uuid4().int % 10**8:08d}",
                        market="GB", audience="public", failed_turns=0, created_at=NOW - timedelta(days=3),
                        last_inbound_at=NOW - timedelta(hours=last_inbound_hours_ago))
    session.add(conv)
    session.flush()
    return conv


def _ids(entries: list[desk.RequestEntry]) -> set[str]:
    return {e.request.id for e in entries}


def _last_message(session: Session, conv: Conversation) -> Message:
    return session.execute(select(Message).where(Message.conversation_id == conv.id)
                           .order_by(Message.id.desc()).limit(1)).scalar_one()


# ---------------------------------------------------------------- who works what


def test_each_role_sees_its_kinds_and_reps_never_see_literature(session: Session) -> None:
    conv = _conv(session)
    samples = _request(session, conv, "samples")
    support = _request(session, conv, "patient_support", details={"support_topic": "copay card"})
    access = _request(session, conv, "access", details={"access_topic": "prior auth"})
    contact = _request(session, conv, "contact_update", details={"new_contact_details": "a@b.example"})
    rep_meeting = _request(session, conv, "meeting", team="rep")
    msl_meeting = _request(session, conv, "meeting", team="msl")
    literature = _request(session, conv, "literature", details={"literature_topic": "paediatric data"})
    mine = {samples.id, support.id, access.id, contact.id, rep_meeting.id, msl_meeting.id, literature.id}

    seen = {role: _ids(desk.list_requests(session, _staff(session, role), now=NOW)) & mine
            for role in ("rep", "msl", "medical_reviewer", "safety", "cx_analyst", "content_admin", "admin")}
    assert seen["rep"] == {samples.id, support.id, access.id, contact.id, rep_meeting.id}
    assert seen["msl"] == {msl_meeting.id, literature.id}
    assert seen["medical_reviewer"] == {literature.id}
    assert seen["safety"] == seen["cx_analyst"] == seen["content_admin"] == seen["admin"] == set()
    # A rep who is also an MSL still never sees literature (the firewall wins).
    both = _ids(desk.list_requests(session, _staff(session, "rep", "msl"), now=NOW)) & mine
    assert literature.id not in both and msl_meeting.id in both
    with pytest.raises(Forbidden):
        desk.get_for_staff(session, literature.id, _staff(session, "rep"))
    with pytest.raises(NotFound):
        desk.get_for_staff(session, uuid.uuid4().hex, _staff(session, "rep"))


def test_reps_with_a_territory_see_their_territory_their_hcps_and_unplaced_requests(session: Session) -> None:
    north, south = f"N-{uuid.uuid4().hex[:6]}", f"S-{uuid.uuid4().hex[:6]}"
    rep = _staff(session, "rep", territory=north)
    in_north = _request(session, _conv(session, hcp=_hcp(session, territory=north)))
    in_south = _request(session, _conv(session, hcp=_hcp(session, territory=south)))
    assigned = _request(session, _conv(session, hcp=_hcp(session, territory=south, assigned_rep_id=rep.id)))
    unplaced = _request(session, _conv(session))
    seen = _ids(desk.list_requests(session, rep, now=NOW))
    assert {in_north.id, assigned.id, unplaced.id} <= seen and in_south.id not in seen
    with pytest.raises(Forbidden, match="another team or territory"):
        desk.change_status(session, in_south.id, rep, status="resolved", now=NOW)
    # Staff without a territory work every territory.
    assert in_south.id in _ids(desk.list_requests(session, _staff(session, "rep"), now=NOW))


def test_the_list_is_ordered_by_sla_and_flags_overdue_and_due_soon(session: Session) -> None:
    rep = _staff(session, "rep")
    conv = _conv(session)
    contact = _request(session, conv, "contact_update", details={"new_contact_details": "x"})  # due in 1 day
    samples = _request(session, conv, "samples")  # due in 3 days
    entries = [e for e in desk.list_requests(session, rep, now=NOW + timedelta(hours=2))
               if e.request.id in {contact.id, samples.id}]
    assert [e.request.id for e in entries] == [contact.id, samples.id]
    assert [e.due for e in entries] == ["due_soon", "on_time"]
    later = {e.request.id: e.due for e in desk.list_requests(session, rep, now=NOW + timedelta(days=2))}
    assert later[contact.id] == "overdue" and later[samples.id] == "due_soon"
    with pytest.raises(InvalidInput, match="unknown status filter"):
        desk.list_requests(session, rep, now=NOW, status="finished")
    with pytest.raises(InvalidInput, match="unknown request kind"):
        desk.list_requests(session, rep, now=NOW, kind="pizza")


# ---------------------------------------------------------------- status changes


def test_resolving_tells_the_webchat_hcp_asks_csat_for_that_request_and_is_audited(
        session: Session, settings: Settings) -> None:
    rep = _staff(session, "rep")
    conv = _conv(session)
    row = _request(session, conv)
    moved = desk.change_status(session, row.id, rep, status="in_progress", now=NOW + timedelta(hours=1))
    assert moved.request.status == RequestStatus.in_progress and moved.message is None
    out = desk.change_status(session, row.id, rep, status="resolved", now=NOW + timedelta(hours=5))
    assert out.request.status == RequestStatus.resolved and out.request.closed_by == rep.id
    assert out.request.completed_at == NOW + timedelta(hours=5) and out.whatsapp_template is None
    msg = _last_message(session, conv)
    assert msg.id == out.message.id if out.message else False
    assert row.reference in msg.body and "has been completed" in msg.body and "1 = poor, 5 = excellent" in msg.body
    assert [b["title"] for b in msg.buttons or []] == ["1", "2", "3", "4", "5"]
    assert msg.sender_type == "staff" and msg.sender_id == rep.id
    survey = session.get(SurveyResponse, out.survey_id)
    assert survey is not None and survey.service_request_id == row.id and survey.status == "asked"
    actions = [e.action for e in session.execute(select(AuditEvent).where(AuditEvent.subject_id == row.id)
                                                 .order_by(AuditEvent.seq)).scalars()]
    assert actions == ["service_request.created", "service_request.in_progress", "service_request.resolved"]

    # The HCP taps 4: Rasa's give_score action records it against this request.
    ctx = ActionContext(session=session, settings=settings, conversation=conv, now=NOW + timedelta(hours=6),
                        tracker=tracker('/give_score{"score": "4"}', intent="give_score",
                                        entities=[{"entity": "score", "value": "4"}]))
    give_score.run(ctx)
    session.refresh(survey)
    assert (survey.score, survey.status) == (4, "answered")
    view = desk.view_request(session, row.id, rep, now=NOW + timedelta(hours=7))
    assert view.csat == 4 and view.allowed == ()


def test_submitting_a_request_no_longer_asks_csat(session: Session, settings: Settings) -> None:
    from api.rasa.actions import submit_samples

    conv = _conv(session)
    ctx = ActionContext(session=session, settings=settings, conversation=conv, now=NOW,
                        tracker=tracker("12 Harley Street", intent="inform",
                                        slots={"product": "cardiovex", "sample_quantity": "2",
                                               "delivery_address": "12 Harley Street",
                                               "request_confirmed": "yes"}))
    result = submit_samples.run(ctx)
    texts = [r.get("custom", {}).get("text", r.get("text", "")) for r in result.responses]
    assert len(texts) == 1 and "sample request is recorded" in texts[0]
    assert session.execute(select(SurveyResponse).where(SurveyResponse.conversation_id == conv.id)).first() is None


def test_cannot_fulfil_needs_a_reason_which_the_hcp_is_told(session: Session) -> None:
    rep = _staff(session, "rep")
    conv = _conv(session)
    row = _request(session, conv, "meeting", team="rep", details={"preferred_times": "Fridays"})
    for blank in ("", "   "):
        with pytest.raises(InvalidInput, match="say why"):
            desk.change_status(session, row.id, rep, status="cannot_fulfil", reason=blank, now=NOW)
    with pytest.raises(InvalidInput, match="longer than"):
        desk.change_status(session, row.id, rep, status="cannot_fulfil", reason="x" * 1001, now=NOW)
    assert session.get(ServiceRequest, row.id).status == "open"  # type: ignore[union-attr]
    out = desk.change_status(session, row.id, rep, status="cannot_fulfil",
                             reason="Our representative is on leave until March", now=NOW + timedelta(days=3))
    assert out.request.outcome_reason == "Our representative is on leave until March"
    body = _last_message(session, conv).body
    assert "could not complete it. Our representative is on leave until March." in body and "1 = poor" in body
    events = session.execute(select(AuditEvent).where(AuditEvent.subject_id == row.id,
                                                      AuditEvent.action == "service_request.cannot_fulfil")).scalars()
    (event,) = list(events)
    assert event.data["sla_met"] is False and "on leave" not in str(event.data)


@pytest.mark.parametrize(("first", "then", "words"), [
    ("resolved", "in_progress", "a closed request cannot change"),
    ("resolved", "resolved", "a closed request cannot change"),
    ("cannot_fulfil", "resolved", "a closed request cannot change"),
    ("in_progress", "in_progress", "it can move to resolved, cannot fulfil, not in progress"),
    ("in_progress", "open", "it can move to resolved, cannot fulfil, not open"),
])
def test_illegal_transitions_are_conflicts_that_change_nothing(session: Session, first: str, then: str,
                                                               words: str) -> None:
    rep = _staff(session, "rep")
    conv = _conv(session)
    row = _request(session, conv)
    desk.change_status(session, row.id, rep, status=first, reason="no stock", now=NOW)
    before = session.execute(select(Message.id).where(Message.conversation_id == conv.id)).scalars().all()
    with pytest.raises(Conflict, match=words):
        desk.change_status(session, row.id, rep, status=then, reason="again", now=NOW + timedelta(hours=1))
    assert session.get(ServiceRequest, row.id).status == first  # type: ignore[union-attr]
    after = session.execute(select(Message.id).where(Message.conversation_id == conv.id)).scalars().all()
    assert after == before


def test_an_unknown_status_and_a_stale_page_are_refused(session: Session) -> None:
    rep = _staff(session, "rep")
    row = _request(session, _conv(session))
    with pytest.raises(InvalidInput, match="unknown status 'done'"):
        desk.change_status(session, row.id, rep, status="done", now=NOW)
    desk.change_status(session, row.id, rep, status="in_progress", now=NOW)
    with pytest.raises(Conflict, match="changed while you were looking: it is now in progress"):
        desk.change_status(session, row.id, rep, status="resolved", expected_status="open", now=NOW)


def test_notes_are_internal_audited_without_their_words_and_validated(session: Session) -> None:
    rep = _staff(session, "rep")
    conv = _conv(session)
    row = _request(session, conv)
    before = session.execute(select(Message.id).where(Message.conversation_id == conv.id)).scalars().all()
    note = desk.add_note(session, row.id, rep, text="  Called the practice manager; ships Tuesday  ", now=NOW)
    assert note.text == "Called the practice manager; ships Tuesday"
    for bad, words in (("", "empty"), ("x" * (desk.MAX_NOTE + 1), "longer than")):
        with pytest.raises(InvalidInput, match=words):
            desk.add_note(session, row.id, rep, text=bad, now=NOW)
    assert session.execute(select(Message.id).where(Message.conversation_id == conv.id)).scalars().all() == before
    (event,) = session.execute(select(AuditEvent).where(AuditEvent.subject_id == row.id,
                                                        AuditEvent.action == "service_request.note_added")).scalars()
    assert event.actor_id == rep.id and "practice manager" not in str(event.data)
    view = desk.view_request(session, row.id, rep, now=NOW)
    assert [n.text for n in view.notes] == [note.text]
    assert session.execute(select(ServiceRequestNote).where(ServiceRequestNote.service_request_id == row.id)
                           ).scalar_one().staff_id == rep.id


# ---------------------------------------------------------------- WhatsApp


def test_on_whatsapp_inside_the_window_the_update_is_a_plain_reply(session: Session) -> None:
    rep = _staff(session, "rep")
    conv = _whatsapp_conv(session, last_inbound_hours_ago=2)
    row = _request(session, conv)
    out = desk.change_status(session, row.id, rep, status="resolved", now=NOW)
    assert out.whatsapp_template is None and out.message is not None
    assert session.get(WhatsappSend, out.message.id) is None


def test_on_whatsapp_outside_the_window_the_update_goes_as_the_request_update_template(session: Session) -> None:
    rep: StaffIdentity = _staff(session, "rep")
    conv = _whatsapp_conv(session, last_inbound_hours_ago=30)
    row = _request(session, conv)
    out = desk.change_status(session, row.id, rep, status="resolved", now=NOW)
    assert out.whatsapp_template == "request-update" and out.message is not None
    send = session.get(WhatsappSend, out.message.id)
    assert send is not None and send.purpose == "request-update" and send.content_variables == {"1": row.reference}


def test_a_request_of_a_known_hcp_rates_on_the_hcps_profile(session: Session) -> None:
    hcp: Hcp = _hcp(session)
    conv = _conv(session, hcp=hcp)
    row = _request(session, conv)
    out = desk.change_status(session, row.id, _staff(session, "rep"), status="resolved", now=NOW)
    survey = session.get(SurveyResponse, out.survey_id)
    assert survey is not None and survey.subject == f"hcp:{hcp.id}" and survey.hcp_id == hcp.id


def test_two_staff_closing_at_once_only_one_wins_and_the_hcp_is_told_once(engine: Engine) -> None:
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with unit_of_work(factory) as s:
        conv = _conv(s)
        row = _request(s, conv)
        first, second = _staff(s, "rep"), _staff(s, "rep")
        rid, conv_id = row.id, conv.id
    late = factory()
    try:
        assert late.get(ServiceRequest, rid).status == "open"  # type: ignore[union-attr]  # page loaded
        late.commit()  # the read ends (SQLite: no lock held); the loaded row stays, as a page shows it
        with unit_of_work(factory) as s:
            desk.change_status(s, rid, first, status="resolved", now=NOW)
        with pytest.raises(Conflict, match="already resolved by"):
            desk.change_status(late, rid, second, status="cannot_fulfil", reason="out of stock", now=NOW)
        late.rollback()
    finally:
        late.close()
    with factory() as s:
        final = s.get(ServiceRequest, rid)
        assert final is not None and final.status == "resolved" and final.closed_by == first.id
        told = s.execute(select(func.count()).select_from(Message).where(
            Message.conversation_id == conv_id, Message.direction == "out")).scalar_one()
        asked = s.execute(select(func.count()).select_from(SurveyResponse).where(
            SurveyResponse.service_request_id == rid)).scalar_one()
        assert (told, asked) == (1, 1)
