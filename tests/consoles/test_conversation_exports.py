"""Per-conversation transcripts (printable, firewall as in the Inbox) and the CX conversation CSV,
tested with canaries: text that must never reach a reader it is not for."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.conversations.models import Conversation
from api.db import unit_of_work
from api.handoffs.models import Handoff
from api.handoffs.service import open_handoff
from api.hcps.models import Hcp
from api.safety.firewall import WITHHELD_TEXT
from api.safety.screen import ScreenResult
from api.settings import Settings
from feedback.conversation_export import COLUMNS
from feedback.models import AnswerRating, FeedbackComment, SurveyResponse
from tests.consoles.conftest import StaffAccount, login
from tests.consoles.review_fixtures import OTHER_THAN, Chat, ReviewWorld, canary, review_world, unique

JSON = {"accept": "application/json"}


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> Iterator[ReviewWorld]:
    yield from review_world(engine, settings, make_staff)


@dataclass
class Planted:
    chat: Chat
    plain: str  # an ordinary question: every reader of the transcript sees it
    ae: str  # the adverse event the HCP reported
    inquiry: str  # the off-label question that went to Medical
    html: str  # markup typed by the HCP
    handoff_id: str


def _plant(world: ReviewWorld, *, target: str = "rep", territory: str | None = None) -> Planted:
    chat = world.chat()
    plain, ae, inquiry = canary(), canary(), canary()
    world.screen.script[f"a patient had a seizure on cardiovex {ae}"] = ScreenResult(
        adverse_event=True, ae_categories=("side_effect",), ae_score=0.95, products=("cardiovex",), serious=True,
        serious_terms=("seizure",))
    world.screen.script[f"can cardiovex be given to a child {inquiry}"] = ScreenResult(
        off_label=True, products=("cardiovex",), off_label_reasons=("population",))
    html = f"<script>alert('{unique()}')</script>"
    chat.say(f"what are the opening hours of your office {plain}")
    chat.say(f"a patient had a seizure on cardiovex {ae}")
    chat.say(f"can cardiovex be given to a child {inquiry}")
    chat.say(html)
    with unit_of_work(world.factory) as s:
        conv = s.get(Conversation, chat.conversation_id)
        assert conv is not None
        if territory:
            hcp = Hcp(name="Dr Olu Mensah", specialty="Cardiology", country="GB", verification_status="verified",
                      territory=territory, created_at=world.clock.now())
            s.add(hcp)
            s.flush()
            conv.hcp_id = hcp.id
        handoff = open_handoff(s, conv, target=target, reason="hcp_request", now=world.clock.now())
        if territory:
            handoff.hcp_id = conv.hcp_id
        handoff_id = handoff.id
    return Planted(chat, plain, ae, inquiry, html, handoff_id)


def _url(p: Planted) -> str:
    return f"/console/conversations/{p.chat.conversation_id}/transcript"


# ---------------------------------------------------------------- transcripts


def test_a_reps_transcript_withholds_ae_and_medical_text_exactly_as_the_inbox(world: ReviewWorld) -> None:
    p = _plant(world)
    rep, account, _csrf = world.staff_client("rep")
    res = rep.get(_url(p))
    assert res.status_code == 200, res.text
    assert res.headers["cache-control"] == "no-store"
    page = res.text
    assert p.plain in page  # the control: ordinary text is there
    assert p.ae not in page and p.inquiry not in page
    assert WITHHELD_TEXT in page
    assert "for Medical or Patient Safety only and are not shown in your copy" in page
    # The same messages are withheld as in the Inbox's own transcript of the handoff.
    inbox = rep.get(f"/api/staff/inbox/{p.handoff_id}/messages", headers=JSON).json()["messages"]
    withheld_in_inbox = {m["id"] for m in inbox if m["withheld"]}
    assert withheld_in_inbox
    assert {int(x) for x in _withheld_ids(page)} == withheld_in_inbox
    with world.factory() as s:
        [event] = s.execute(select(AuditEvent).where(AuditEvent.action == "conversation.transcript_exported",
                                                     AuditEvent.subject_id == p.chat.conversation_id)).scalars()
        assert event.actor_id == account.id and event.data["withheld"] == len(withheld_in_inbox)
        assert event.data["medical_content_shown"] is False


def _withheld_ids(page: str) -> list[str]:
    return re.findall(r'class="line (?:in|out) withheld" data-message="(\d+)"', page)


def test_markup_typed_by_the_hcp_is_shown_as_text(world: ReviewWorld) -> None:
    p = _plant(world)
    rep, _account, _csrf = world.staff_client("rep")
    page = rep.get(_url(p)).text
    assert p.html not in page
    assert p.html.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;") in page


def test_msl_and_medical_reviewer_read_the_whole_conversation_and_it_is_audited(world: ReviewWorld) -> None:
    p = _plant(world, target="msl")
    for role in ("msl", "medical_reviewer"):
        client, account, _csrf = world.staff_client(role)
        res = client.get(_url(p))
        assert res.status_code == 200, (role, res.text)
        assert p.ae in res.text and p.inquiry in res.text and p.plain in res.text, role
        assert "keep it within Medical" in res.text
        with world.factory() as s:
            viewed = s.execute(select(AuditEvent).where(AuditEvent.action == "conversation.medical_content_viewed",
                                                        AuditEvent.actor_id == account.id)).scalars().all()
            assert viewed, role


def test_a_rep_asking_for_a_conversation_without_a_rep_handoff_gets_a_clear_403(world: ReviewWorld) -> None:
    p = _plant(world, target="msl")  # the conversation went to an MSL: not the rep's
    rep, _account, _csrf = world.staff_client("rep")
    for accept in ("text/html", "application/json"):
        res = rep.get(_url(p), headers={"accept": accept})
        assert res.status_code == 403
        assert "transcript is not yours to read" in res.text
        assert p.ae not in res.text and p.plain not in res.text


def test_a_rep_of_another_territory_is_refused(world: ReviewWorld) -> None:
    p = _plant(world, territory="north")
    south = _client_in(world, "south")
    assert south.get(_url(p), headers=JSON).status_code == 403
    assert _client_in(world, "north").get(_url(p)).status_code == 200


def _client_in(world: ReviewWorld, territory: str) -> TestClient:
    client = world.make_client()
    login(client, world.make_staff("rep", territory=territory))
    return client


def test_unknown_conversation_is_404_and_other_roles_are_refused(world: ReviewWorld) -> None:
    p = _plant(world)
    rep, _account, _csrf = world.staff_client("rep")
    for bad in (uuid.uuid4().hex, "x" * 300):
        res = rep.get(f"/console/conversations/{bad}/transcript", headers=JSON)
        assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"
    for role in ("safety", "cx_analyst", "content_admin", "admin"):
        client, _acc, _csrf = world.staff_client(role)
        res = client.get(_url(p))
        assert res.status_code == 403 and p.ae not in res.text and p.plain not in res.text, role
    assert world.make_client().get(_url(p), headers=JSON).status_code == 401


def test_the_page_prints_without_console_chrome(world: ReviewWorld) -> None:
    p = _plant(world)
    rep, _account, _csrf = world.staff_client("rep")
    page = rep.get(_url(p)).text
    assert '<link rel="stylesheet" href="/static/console/transcript.css">' in page
    css = rep.get("/static/console/transcript.css").text
    media = css[css.index("@media print"):]
    assert "header.top" in media and "display:none" in media and "break-inside:avoid" in media
    # reachable from the Inbox page of the handoff
    assert f'href="/console/conversations/{p.chat.conversation_id}/transcript"' in rep.get(
        f"/console/inbox/{p.handoff_id}").text


# ---------------------------------------------------------------- CX CSV


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _feedback(world: ReviewWorld, p: Planted, comment: str) -> None:
    now = world.clock.now()
    with unit_of_work(world.factory) as s:
        cid = p.chat.conversation_id
        subject = f"webchat:conversation:{cid}"
        s.add(SurveyResponse(kind="csat", status="answered", conversation_id=cid, subject=subject, score=4,
                             asked_at=now, answered_at=now + timedelta(minutes=1)))
        s.add(FeedbackComment(conversation_id=cid, subject=subject, text=comment, category="service", created_at=now))
        s.add(AnswerRating(conversation_id=cid, subject=subject, helpful=False, reason="unclear", created_at=now))
        h = s.get(Handoff, p.handoff_id)
        assert h is not None
        h.claimed_at, h.claimed_by, h.status = now + timedelta(minutes=7), "someone", "claimed"


def test_cx_csv_has_one_row_per_conversation_and_no_free_text_by_default(world: ReviewWorld) -> None:
    p = _plant(world)
    comment = f"the rep was slow, mail me at nadia.kowalczyk@example.org {canary()}"
    _feedback(world, p, comment)
    cx, account, _csrf = world.staff_client("cx_analyst")
    res = cx.get("/api/cx/conversations.csv", params={"days": "7"})
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/csv")
    assert res.headers["content-disposition"].startswith('attachment; filename="conversations-')
    for secret in (p.plain, p.ae, p.inquiry, comment.split()[-1], "nadia.kowalczyk", "<script>"):
        assert secret not in res.text
    rows = _csv(res.text)
    assert list(rows[0].keys()) == list(COLUMNS)
    [row] = [r for r in rows if r["conversation_id"] == p.chat.conversation_id]
    assert row["channel"] == "webchat" and row["handoff"] == "rep" and row["handoff_status"] == "claimed"
    assert row["outcome"] == "handoff claimed"
    assert row["time_to_human_s"] == "420"
    assert row["medical_inquiry"] == "yes" and row["contained"] == "no"
    assert row["csat"] == "4" and row["answers_not_helpful"] == "1"
    assert row["themes"] == "answer unclear;service"
    assert int(row["messages_in"]) == 4
    assert len([r for r in rows if r["conversation_id"] == p.chat.conversation_id]) == 1
    with world.factory() as s:
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "cx.conversations_exported",
                                                   AuditEvent.actor_id == account.id)).scalar_one()
        assert event.data["free_text"] is None and event.data["rows"] == len(rows)


def test_cx_csv_free_text_is_redacted_and_cannot_run_as_a_formula(world: ReviewWorld) -> None:
    p = _plant(world)
    marker = canary()
    _feedback(world, p, f"=HYPERLINK(\"http://x\") waiting too long, call +44 7700 900456 {marker}")
    cx, _account, _csrf = world.staff_client("cx_analyst")
    res = cx.get("/api/cx/conversations.csv", params={"days": "7", "free_text": "1"})
    assert res.status_code == 200, res.text
    [row] = [r for r in _csv(res.text) if r["conversation_id"] == p.chat.conversation_id]
    assert marker in row["comments"]  # the control: the comment is there
    assert "7700 900456" not in res.text  # its phone number is not
    assert row["comments"].startswith("'=")
    assert p.ae not in res.text and p.inquiry not in res.text and p.plain not in res.text


def test_cx_csv_bad_requests_are_clear_errors(world: ReviewWorld) -> None:
    cx, _account, _csrf = world.staff_client("cx_analyst")
    for params, message in [({"channel": "fax"}, "channel must be one of"),
                            ({"free_text": "yes"}, "free_text is 1"),
                            ({"since": "yesterday"}, "dates must look like"),
                            ({"days": "5"}, "period must be one of")]:
        res = cx.get("/api/cx/conversations.csv", params=params, headers=JSON)
        assert res.status_code == 422 and message in res.json()["error"]["message"], params


def test_cx_csv_is_for_cx_analysts_only(world: ReviewWorld) -> None:
    p = _plant(world)
    for role in OTHER_THAN["cx_analyst"]:
        client, _acc, _csrf = world.staff_client(role)
        res = client.get("/api/cx/conversations.csv", headers=JSON)
        assert res.status_code == 403 and p.chat.conversation_id not in res.text, role
