"""Staff replies in a handoff are screened before they go: refusals keep nothing in the outbox,
overrides need a reason and are audited, a rep's off-label claim cannot be overridden, an adverse
event a staff member mentions opens a safety case (also when the reply is refused), and contact
data the HCP gave may be used in the reply."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.clock import FakeClock
from api.conversations import service as conversations
from api.conversations.models import Conversation, Message, OutboxItem
from api.conversations.outbound import check_staff_text
from api.db import unit_of_work
from api.errors import InvalidInput
from api.handoffs import screening
from api.handoffs import service as handoffs
from api.handoffs.errors import ReplyBlocked
from api.safety.classifier import build_screen
from api.safety.models import AdverseEvent, AdverseEventMessage
from api.safety.products import load_catalogue
from api.staff.models import StaffUser
from api.staff.service import StaffIdentity
from knowledge.service import load_library
from tests.conftest import REPO
from tests.consoles.conftest import StaffAccount
from tests.consoles.handoff_factory import (
    MONDAY_MORNING,
    AppMaker,
    clocked_app,  # noqa: F401
    factory,
    mark_screened,
    new_chat,
    post_json,
    queue_handoff,
    staff_client,
    write_library,
)

PRODUCTS = REPO / "knowledge" / "content" / "products.yaml"


@pytest.fixture(scope="module")
def screener(model_dir: Path) -> screening.ReplyScreener:
    safety = build_screen(model_dir, PRODUCTS)
    safety.warm_up()
    return screening.ReplyScreener(load_catalogue(PRODUCTS), safety, "GB")


def _staff(session: Session, *roles: str) -> StaffIdentity:
    user = StaffUser(email=f"{uuid.uuid4().hex[:10]}@halcyon.example", name=f"Robin {uuid.uuid4().hex[:4]}",
                     password_hash="x", roles=list(roles), active=True, available=True, created_at=MONDAY_MORNING)
    session.add(user)
    session.flush()
    return StaffIdentity(id=user.id, email=user.email, name=user.name, roles=frozenset(roles), territory=None,
                         session_id="s", csrf_token="c")


def _claimed(session: Session, *roles: str, said: tuple[str, ...] = ()) -> tuple[str, Conversation, StaffIdentity]:
    conv, _ = conversations.create_webchat(session, now=MONDAY_MORNING, market="GB")
    for text in said:
        mark_screened(session, conversations.persist_inbound(session, conv, text=text, now=MONDAY_MORNING).message)
    target = {"rep": "rep", "msl": "msl", "medical_reviewer": "medical_information"}[roles[0]]
    handoff = handoffs.open_handoff(session, conv, target=target, reason="hcp_request", now=MONDAY_MORNING)
    ident = _staff(session, *roles)
    handoffs.claim(session, handoff.id, ident, MONDAY_MORNING)
    return handoff.id, conv, ident


def _staff_messages(session: Session, conv: Conversation) -> list[str]:
    return list(session.execute(select(Message.body).where(Message.conversation_id == conv.id,
                                                           Message.sender_type == "staff")).scalars())


def _audits(session: Session, action: str, subject_id: str) -> list[AuditEvent]:
    return list(session.execute(select(AuditEvent).where(AuditEvent.action == action,
                                                         AuditEvent.subject_id == subject_id)).scalars())


# ---------------------------------------------------------------- the service


def test_a_reps_off_label_dose_claim_is_refused_and_nothing_reaches_the_outbox(
        session: Session, screener: screening.ReplyScreener) -> None:
    handoff_id, conv, rep = _claimed(session, "rep", said=("Is there any room above the usual statin dose?",))
    text = "Go ahead and use Cardiovex 80 mg once daily, plenty of my GPs do."
    outcome = screening.reply(session, handoff_id, rep, MONDAY_MORNING, text=text, screener=screener)
    assert outcome.message is None and outcome.refused is not None
    detail = outcome.refused.detail
    assert isinstance(detail, dict)
    assert [f["kind"] for f in detail["findings"]] == ["off_label"]
    assert "dose" in detail["findings"][0]["detail"] and detail["overridable"] is False
    assert _staff_messages(session, conv) == []
    [blocked] = _audits(session, "staff_reply.blocked", handoff_id)
    assert blocked.actor_id == rep.id and blocked.data["findings"][0]["kind"] == "off_label"


def test_a_rep_cannot_send_an_off_label_claim_even_with_a_reason(
        session: Session, screener: screening.ReplyScreener) -> None:
    handoff_id, conv, rep = _claimed(session, "rep", said=("Would Respizan be OK for a 10 year old boy with asthma?",))
    outcome = screening.reply(session, handoff_id, rep, MONDAY_MORNING, text="Yes, absolutely, no problem at all.",
                              override_reason="The HCP insisted and I know this doctor well.", screener=screener)
    assert outcome.refused is not None and "even with a reason" in outcome.refused.message
    assert _staff_messages(session, conv) == []
    assert _audits(session, "staff_reply.override", handoff_id) == []
    assert _audits(session, "staff_reply.blocked", handoff_id)[0].data["override_tried"] is True


def test_an_msl_may_answer_the_same_medical_question(session: Session, screener: screening.ReplyScreener) -> None:
    handoff_id, conv, msl = _claimed(session, "msl", said=("Any data on Cardiovex in 15 year olds?",))
    text = "Cardiovex has not been studied in 15 year olds; one small registry reported 10 mg use in teenagers."
    outcome = screening.reply(session, handoff_id, msl, MONDAY_MORNING, text=text, screener=screener)
    assert outcome.refused is None and outcome.message is not None
    assert _staff_messages(session, conv) == [text]


def test_a_superlative_is_blocked_and_goes_out_with_an_audited_reason(
        session: Session, screener: screening.ReplyScreener) -> None:
    handoff_id, conv, rep = _claimed(session, "rep")
    text = "Glucorel is simply the safest choice you can make for your type 2 patients."
    first = screening.reply(session, handoff_id, rep, MONDAY_MORNING, text=text, screener=screener)
    assert first.refused is not None and first.refused.detail["overridable"] is True  # type: ignore[index]
    assert [f.kind for f in first.screen.findings] == ["promotional"]
    with pytest.raises(InvalidInput, match="at least"):
        screening.reply(session, handoff_id, rep, MONDAY_MORNING, text=text, screener=screener, override_reason="ok")
    reason = "Quoting the HCP's own words back to them, agreed with my manager."
    sent = screening.reply(session, handoff_id, rep, MONDAY_MORNING, text=text, screener=screener,
                           override_reason=reason)
    assert sent.message is not None and sent.overridden == ["promotional"]
    [override] = _audits(session, "staff_reply.override", handoff_id)
    assert override.actor_id == rep.id and override.data["reason"] == reason
    assert override.data["message_id"] == sent.message.id
    assert _staff_messages(session, conv) == [text]


def test_a_product_claim_no_approved_item_makes_is_blocked_for_a_rep(
        session: Session, screener: screening.ReplyScreener) -> None:
    handoff_id, _conv, rep = _claimed(session, "rep")
    outcome = screening.reply(session, handoff_id, rep, MONDAY_MORNING, screener=screener,
                              text="Respizan halves exacerbations within a fortnight.")
    assert outcome.refused is not None
    assert [f.kind for f in outcome.screen.findings] == ["promotional"]


def test_a_staff_mention_of_an_adverse_event_opens_a_case_and_the_reply_still_goes(
        session: Session, screener: screening.ReplyScreener) -> None:
    handoff_id, conv, msl = _claimed(session, "msl")
    text = "Thanks. Noted that your patient developed jaundice three weeks after starting Cardiovex."
    now = MONDAY_MORNING.replace(hour=11, minute=17)
    outcome = screening.reply(session, handoff_id, msl, now, text=text, screener=screener)
    assert outcome.message is not None and outcome.adverse_event_reference
    case = session.execute(select(AdverseEvent).where(AdverseEvent.reference == outcome.adverse_event_reference)
                           ).scalar_one()
    assert case.source == "staff" and case.reported_by_staff_id == msl.id
    assert case.day0_at == now and case.raw_text == text and case.conversation_id == conv.id
    assert case.has_reporter and case.has_event and case.products == ["cardiovex"]
    linked = session.execute(select(AdverseEventMessage.message_id)
                             .where(AdverseEventMessage.adverse_event_id == case.id)).scalars().all()
    assert linked == [outcome.message.id]
    [created] = _audits(session, "adverse_event.created", case.id)
    assert created.actor_id == msl.id and created.data["source"] == "staff"


def test_an_adverse_event_in_a_refused_reply_is_still_captured(
        session: Session, screener: screening.ReplyScreener) -> None:
    handoff_id, conv, rep = _claimed(session, "rep")
    text = ("Sorry to hear your patient was hospitalised with severe muscle pain on Cardiovex, "
            "it is still the best statin there is.")
    outcome = screening.reply(session, handoff_id, rep, MONDAY_MORNING, text=text, screener=screener)
    assert outcome.refused is not None and outcome.message is None
    assert outcome.refused.detail["adverse_event_reference"] == outcome.adverse_event_reference  # type: ignore[index]
    case = session.execute(select(AdverseEvent).where(AdverseEvent.reference == outcome.adverse_event_reference)
                           ).scalar_one()
    assert case.raw_text == text and case.source == "staff" and case.seriousness == "serious"
    assert _staff_messages(session, conv) == []


def test_contact_data_the_hcp_gave_may_be_used_but_other_people_data_may_not(
        session: Session, screener: screening.ReplyScreener) -> None:
    handoff_id, conv, rep = _claimed(session, "rep", said=("Best to ring me on 07700 900481 after clinic.",))
    ok = "I will ring you on 07700 900481 after your clinic on Thursday."
    assert screening.reply(session, handoff_id, rep, MONDAY_MORNING, text=ok, screener=screener).message is not None
    leak = "My other customer Dr Imogen Ashcroft is on 07700 900999 if you want to compare notes."
    refused = screening.reply(session, handoff_id, rep, MONDAY_MORNING, text=leak, screener=screener)
    assert refused.refused is not None
    assert {f.kind for f in refused.screen.findings} == {"personal_data"}
    excerpts = {f["excerpt"] for f in refused.refused.detail["findings"]}  # type: ignore[index]
    assert "07700 900999" in excerpts
    assert _staff_messages(session, conv) == [ok]


@pytest.mark.parametrize(("text", "words"), [
    ("   ", "empty"),
    ("x" * 10_000, "10000 characters"),
    ("Please see <b>this</b> leaflet", "HTML"),
    ("<script>alert(1)</script>", "HTML"),
])
def test_bad_input_is_refused_with_a_plain_reason(session: Session, screener: screening.ReplyScreener,
                                                  text: str, words: str) -> None:
    handoff_id, conv, rep = _claimed(session, "rep")
    with pytest.raises(InvalidInput, match=words):
        screening.reply(session, handoff_id, rep, MONDAY_MORNING, text=text, screener=screener)
    assert _staff_messages(session, conv) == []


@pytest.mark.parametrize("text", ["Stop if CK<ULN fails and ALT>3x ULN.", "Aim for eGFR>30 and HbA1c<7.", "a <3 b"])
def test_comparisons_in_clinical_text_are_not_taken_for_markup(text: str) -> None:
    assert check_staff_text(text) == text


def test_send_reply_raises_the_refusal(session: Session, screener: screening.ReplyScreener) -> None:
    handoff_id, _conv, rep = _claimed(session, "rep")
    with pytest.raises(ReplyBlocked):
        screening.send_reply(session, handoff_id, rep, MONDAY_MORNING, screener=screener,
                            text="Cardiovex works wonders for hypertension as well.")


# ---------------------------------------------------------------- the API (and the firewall canary)


def _outbox_texts(engine: Engine, conversation_id: str) -> list[str]:
    with factory(engine)() as s:
        rows = s.execute(select(Message.body).join(OutboxItem, OutboxItem.message_id == Message.id)
                         .where(Message.conversation_id == conversation_id)).scalars().all()
        return list(rows)


def _load_items(engine: Engine, tmp_path: Path, tag: str) -> str:
    item_id = f"SCR-{tag}"
    with unit_of_work(factory(engine)) as s:
        load_library(s, write_library(tmp_path, [{
            "id": item_id, "version": 1, "product": "cardiovex", "kind": "faq", "audience": ["hcp"],
            "status": "approved", "approved_at": "2026-01-01", "expires_at": "2027-12-31", "markets": ["GB"],
            "title": f"Cardiovex dosing {tag}", "questions": [f"cardiovex dose {tag}?"],
            "approval_code": f"APP-SCR-{tag}",
            # shares more of the reply's words than any demo item does (suggestions rank by that)
            "body": f"You can safely push Cardiovex only to 40 mg daily: 10 to 40 mg once daily ({tag}).",
        }]))
    return item_id


def test_the_api_refuses_with_findings_and_fitting_content_and_keeps_the_canary_from_the_hcp(
        clocked_app: AppMaker, make_staff: Any, engine: Engine, tmp_path: Path) -> None:  # noqa: F811
    tag = uuid.uuid4().hex[:8].upper()
    _load_items(engine, tmp_path, tag)
    canary = f"CANARY-REP-{uuid.uuid4().hex[:10]}"
    clock = FakeClock(MONDAY_MORNING)
    chat = new_chat(engine, now=MONDAY_MORNING)
    handoff_id = queue_handoff(engine, chat, now=MONDAY_MORNING, said=["what is the top dose of cardiovex?"])
    rep: StaffAccount = make_staff("rep")
    client, csrf = staff_client(clocked_app, clock, rep)
    assert post_json(client, f"/api/staff/inbox/{handoff_id}/claim", csrf).status_code == 200

    res = post_json(client, f"/api/staff/inbox/{handoff_id}/reply", csrf,
                    {"text": f"You can safely push Cardiovex to 80 mg daily {canary}"})
    assert res.status_code == 422, res.text
    error = res.json()["error"]
    assert error["code"] == "reply_blocked" and "Your text is kept" in error["message"]
    assert error["detail"]["overridable"] is False
    assert "off_label" in [f["kind"] for f in error["detail"]["findings"]]
    suggestions = error["detail"]["suggestions"]
    assert suggestions and all(s["sendable"] and s["product"] == "cardiovex" for s in suggestions)
    assert f"SCR-{tag}" in [s["content_id"] for s in suggestions]  # the item sharing the reply's words

    override = post_json(client, f"/api/staff/inbox/{handoff_id}/reply", csrf,
                         {"text": f"You can safely push Cardiovex to 80 mg daily {canary}",
                          "override_reason": "The HCP already knows the label, just confirming."})
    assert override.status_code == 422 and override.json()["error"]["code"] == "reply_blocked"
    assert all(canary not in body for body in _outbox_texts(engine, chat.conversation_id))
    with factory(engine)() as s:
        hcp_side = s.execute(select(func.count()).select_from(Message).where(
            Message.conversation_id == chat.conversation_id, Message.body.contains(canary))).scalar_one()
        assert hcp_side == 0
        blocked = _audits(s, "staff_reply.blocked", handoff_id)
        assert len(blocked) == 2 and all(canary not in str(e.data) for e in blocked)  # findings, never the text

    fine = post_json(client, f"/api/staff/inbox/{handoff_id}/reply", csrf,
                     {"text": "I will send you the approved dosing summary now."})
    assert fine.status_code == 200, fine.text
    assert fine.json()["findings"] == [] and fine.json()["message"]["sender_type"] == "staff"


def test_the_api_sends_past_a_personal_data_finding_with_a_reason(
        clocked_app: AppMaker, make_staff: Any, engine: Engine) -> None:  # noqa: F811
    clock = FakeClock(MONDAY_MORNING)
    chat = new_chat(engine, now=MONDAY_MORNING)
    handoff_id = queue_handoff(engine, chat, now=MONDAY_MORNING, said=["who covers my area for samples?"])
    rep: StaffAccount = make_staff("rep")
    client, csrf = staff_client(clocked_app, clock, rep)
    assert post_json(client, f"/api/staff/inbox/{handoff_id}/claim", csrf).status_code == 200
    text = "My colleague covers your area, reach her at 07700 900314."
    refused = post_json(client, f"/api/staff/inbox/{handoff_id}/reply", csrf, {"text": text})
    assert refused.status_code == 422 and refused.json()["error"]["detail"]["overridable"] is True
    sent = post_json(client, f"/api/staff/inbox/{handoff_id}/reply", csrf,
                     {"text": text, "override_reason": "That is her company mobile, she agreed to share it."})
    assert sent.status_code == 200, sent.text
    assert sent.json()["overridden"] == ["personal_data"]
    assert [f["kind"] for f in sent.json()["findings"]] == ["personal_data"]
    assert text in _outbox_texts(engine, chat.conversation_id)


def test_ten_thousand_characters_get_a_clear_422(clocked_app: AppMaker, make_staff: Any,  # noqa: F811
                                                 engine: Engine) -> None:
    clock = FakeClock(MONDAY_MORNING)
    chat = new_chat(engine, now=MONDAY_MORNING)
    handoff_id = queue_handoff(engine, chat, now=MONDAY_MORNING)
    rep: StaffAccount = make_staff("rep")
    client, csrf = staff_client(clocked_app, clock, rep)
    assert post_json(client, f"/api/staff/inbox/{handoff_id}/claim", csrf).status_code == 200
    res = post_json(client, f"/api/staff/inbox/{handoff_id}/reply", csrf, {"text": "a" * 10_000})
    assert res.status_code == 422
    assert res.json()["error"]["message"].startswith("the message is 10000 characters; the limit is 4000")
