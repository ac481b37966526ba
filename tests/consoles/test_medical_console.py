"""The Medical review console: who gets in, what a reviewer sees, and answers reaching the HCP."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api.audit.models import AuditEvent
from api.conversations.models import Conversation
from api.conversations.outbound import MAX_STAFF_TEXT
from api.db import unit_of_work
from api.hcps.models import Hcp
from api.safety.screen import ScreenResult
from api.settings import Settings
from api.staff import notes
from tests.consoles.conftest import StaffAccount
from tests.consoles.review_fixtures import OTHER_THAN, Chat, ReviewWorld, canary, review_world, unique

JSON = {"accept": "application/json"}


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> Iterator[ReviewWorld]:
    yield from review_world(engine, settings, make_staff)


def _ask(world: ReviewWorld, text: str, *, product: str = "cardiovex",
         reasons: tuple[str, ...] = ("population",), chat: Chat | None = None) -> tuple[Chat, str]:
    """An HCP asks an off-label question in web chat; the screen routes it to Medical."""
    chat = chat or world.chat()
    world.screen.script[text] = ScreenResult(off_label=True, products=(product,), off_label_reasons=reasons)
    replies = chat.say(text)
    assert any("Medical Information team" in r["text"] for r in replies)
    return chat, world.inquiry_for(chat.conversation_id).id


def _post(client: TestClient, url: str, csrf: str, body: Any) -> Any:
    return client.post(url, json=body, headers={**JSON, "x-csrf-token": csrf})


def _audit(world: ReviewWorld, subject_id: str, action: str) -> list[AuditEvent]:
    with world.factory() as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.subject_id == subject_id,
                                                       AuditEvent.action == action)
                              .order_by(AuditEvent.seq)).scalars())


def _routes(inquiry_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", "/console/medical"), ("GET", f"/console/medical/{inquiry_id}"),
        ("POST", f"/console/medical/{inquiry_id}/answer"), ("POST", f"/console/medical/{inquiry_id}/close"),
        ("GET", "/api/staff/medical/inquiries"), ("GET", f"/api/staff/medical/inquiries/{inquiry_id}"),
        ("POST", f"/api/staff/medical/inquiries/{inquiry_id}/answer"),
        ("POST", f"/api/staff/medical/inquiries/{inquiry_id}/close"),
    ]


# ---------------------------------------------------------------- access and firewall


def test_every_other_role_is_refused_on_every_medical_route_and_nothing_changes(world: ReviewWorld) -> None:
    chat, inquiry_id = _ask(world, f"can I give cardiovex to a 9 year old? {unique()}")
    before = len(world.messages_of(chat.conversation_id))
    for role in OTHER_THAN["medical_reviewer"]:
        client, _acc, csrf = world.staff_client(role)
        for method, url in [*_routes(inquiry_id), *_routes(uuid.uuid4().hex)]:
            res = client.request(method, url, headers={**JSON, "x-csrf-token": csrf},
                                 json={"text": "sneaky answer", "reason": "x"} if method == "POST" else None)
            assert res.status_code == 403, (role, method, url, res.status_code)
            assert res.json()["error"]["code"] == "forbidden"
        # A form post from that role is refused as well.
        res = client.post(f"/console/medical/{inquiry_id}/answer", data={"csrf_token": csrf, "text": "hi"})
        assert res.status_code == 403
    anonymous = world.make_client()
    assert anonymous.get("/console/medical").status_code == 303  # to the login page
    assert anonymous.get(f"/api/staff/medical/inquiries/{inquiry_id}", headers=JSON).status_code == 401
    assert world.inquiry(inquiry_id).status == "open"
    assert len(world.messages_of(chat.conversation_id)) == before


def test_inquiry_canary_never_reaches_another_role_but_the_reviewer_sees_it(world: ReviewWorld) -> None:
    secret = canary()
    _chat, inquiry_id = _ask(world, f"is cardiovex safe in pregnancy at 40 mg {secret}")
    reviewer, _acc, _csrf = world.staff_client("medical_reviewer")
    assert secret in reviewer.get(f"/console/medical/{inquiry_id}").text  # the control: it is there to leak
    assert secret in reviewer.get("/api/staff/medical/inquiries", headers=JSON).text
    urls = [u for m, u in _routes(inquiry_id) if m == "GET"] + [
        "/console/safety", "/api/staff/safety/cases", f"/console/safety/{inquiry_id}",
        f"/api/staff/safety/cases/{inquiry_id}", f"/api/staff/safety/cases/{inquiry_id}/export"]
    for role in OTHER_THAN["medical_reviewer"]:
        client, _acc, _csrf = world.staff_client(role)
        for url in urls:
            for accept in ("application/json", "text/html"):
                res = client.get(url, headers={"accept": accept})
                assert secret not in res.text, (role, url)
                own_list = role == "safety" and url in ("/console/safety", "/api/staff/safety/cases")
                assert res.status_code in ((200,) if own_list else (403, 404)), (role, url, res.status_code)


# ---------------------------------------------------------------- the list and the context


def test_list_puts_open_inquiries_first_oldest_first_and_filters_by_status_and_product(
        world: ReviewWorld) -> None:
    product = f"prod{unique()[:8]}"
    ids = []
    for n in range(3):
        _chat, inquiry_id = _ask(world, f"question {n} about {product} {unique()}", product=product)
        ids.append(inquiry_id)
        world.clock.advance(minutes=5)
    reviewer, account, csrf = world.staff_client("medical_reviewer")
    first = _post(reviewer, f"/api/staff/medical/inquiries/{ids[0]}/answer", csrf, {"text": "Answered."})
    assert first.status_code == 200, first.text

    listed = reviewer.get("/api/staff/medical/inquiries", params={"product": product}, headers=JSON).json()
    assert [i["id"] for i in listed["inquiries"]] == [ids[1], ids[2], ids[0]]
    assert [i["status"] for i in listed["inquiries"]] == ["open", "open", "answered"]
    only_open = reviewer.get("/api/staff/medical/inquiries", params={"product": product, "status": "open"},
                             headers=JSON).json()
    assert [i["id"] for i in only_open["inquiries"]] == [ids[1], ids[2]]
    answered = reviewer.get("/api/staff/medical/inquiries", params={"product": product, "status": "answered"},
                            headers=JSON).json()
    assert [i["id"] for i in answered["inquiries"]] == [ids[0]]
    bad = reviewer.get("/api/staff/medical/inquiries", params={"status": "pending"}, headers=JSON)
    assert bad.status_code == 422 and "unknown status" in bad.json()["error"]["message"]

    page = reviewer.get("/console/medical", params={"product": product})
    assert page.status_code == 200
    assert page.text.index(ids[1]) < page.text.index(ids[2]) < page.text.index(ids[0])
    assert "Off-label population" in page.text
    with world.factory() as s:
        views = list(s.execute(select(AuditEvent).where(AuditEvent.action == "medical_inquiry.list_viewed",
                                                        AuditEvent.actor_id == account.id)
                                   .order_by(AuditEvent.seq)).scalars())
    # Every list read (three JSON lists and the page; the refused filter read nothing) is audited with what it showed.
    assert [v.data["ids"] for v in views] == [[ids[1], ids[2], ids[0]], [ids[1], ids[2]], [ids[0]],
                                              [ids[1], ids[2], ids[0]]]


def test_the_inquiry_page_shows_question_reasons_hcp_card_and_transcript_and_the_view_is_audited(
        world: ReviewWorld) -> None:
    chat = world.chat()
    chat.say("hello there")
    text = f"what dose of cardiovex for a 12 year old? {unique()}"
    _chat, inquiry_id = _ask(world, text, reasons=("population", "dose"), chat=chat)
    chat.say("thanks, I will wait")
    hcp_name = f"Dr Ada {uuid.uuid4().hex[:6]}"
    with unit_of_work(world.factory) as s:
        hcp = Hcp(name=hcp_name, specialty="cardiology", country="GB", verification_status="verified",
                  created_at=world.clock.now())
        s.add(hcp)
        s.flush()
        conv = s.get(Conversation, chat.conversation_id)
        assert conv is not None
        conv.hcp_id = hcp.id
    reviewer, account, _csrf = world.staff_client("medical_reviewer")

    page = reviewer.get(f"/console/medical/{inquiry_id}")
    assert page.status_code == 200
    for expected in (text, "Off-label population", "Off-label dose", hcp_name, "cardiology", "verified",
                     "hello there", "echo: hello there", "thanks, I will wait", "Medical Information team"):
        assert expected in page.text, expected
    detail = reviewer.get(f"/api/staff/medical/inquiries/{inquiry_id}", headers=JSON).json()
    assert detail["text"] == text and detail["product"] == "cardiovex" and detail["reasons"] == ["population", "dose"]
    assert detail["hcp"]["name"] == hcp_name and detail["hcp"]["verification"] == "verified"
    bodies = [line["body"] for line in detail["transcript"]]
    assert bodies.index("hello there") < bodies.index(text) < bodies.index("thanks, I will wait")
    assert [line["marked"] for line in detail["transcript"] if line["body"] == text] == [True]
    views = _audit(world, inquiry_id, "medical_inquiry.viewed")
    assert [(v.actor_type, v.actor_id) for v in views] == [("staff", account.id)] * 2
    assert reviewer.get(f"/api/staff/medical/inquiries/{uuid.uuid4().hex}", headers=JSON).status_code == 404


def test_unknown_inquiry_ids_are_404_for_a_reviewer_whatever_the_body(world: ReviewWorld) -> None:
    reviewer, _acc, csrf = world.staff_client("medical_reviewer")
    for ghost in (uuid.uuid4().hex, "x" * 300):
        assert reviewer.get(f"/console/medical/{ghost}").status_code == 404
        for action in ("answer", "close"):
            for body in ({}, {"text": ""}, {"text": "An answer."}, {"reason": "dup"}):
                if (action == "answer" and "reason" in body) or (action == "close" and "text" in body):
                    continue
                res = _post(reviewer, f"/api/staff/medical/inquiries/{ghost}/{action}", csrf, body)
                assert res.status_code == 404, (ghost, action, body, res.status_code)
            form = reviewer.post(f"/console/medical/{ghost}/{action}", data={"csrf_token": csrf, "text": "x"})
            assert form.status_code == 404


# ---------------------------------------------------------------- answers


def test_a_free_text_answer_reaches_the_hcp_in_web_chat_and_is_recorded(world: ReviewWorld) -> None:
    chat, inquiry_id = _ask(world, f"off-label question {unique()}")
    reviewer, account, csrf = world.staff_client("medical_reviewer")
    world.clock.advance(hours=3)
    answer = "Dear Doctor, there are no data in children under 12; please see the SmPC section 4.2."
    res = _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/answer", csrf, {"text": answer})
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "answered" and res.json()["reviewer_id"] == account.id

    seen = chat.messages()[-1]
    assert seen["text"] == answer and seen["direction"] == "out"
    inquiry = world.inquiry(inquiry_id)
    assert (inquiry.status, inquiry.response, inquiry.reviewer_id) == ("answered", answer, account.id)
    assert inquiry.answered_at == world.clock.now()
    [msg] = [m for m in world.messages_of(chat.conversation_id) if m.id == inquiry.response_message_id]
    assert (msg.sender_type, msg.sender_id, msg.status) == ("staff", account.id, "sent")
    [event] = _audit(world, inquiry_id, "medical_inquiry.answered")
    assert event.actor_id == account.id and event.data["kind"] == "free_text"
    assert event.data["message_id"] == msg.id and answer not in str(event.data)


def test_the_answer_form_sends_and_redirects_back_with_the_outcome(world: ReviewWorld) -> None:
    chat, inquiry_id = _ask(world, f"form question {unique()}")
    reviewer, account, csrf = world.staff_client("medical_reviewer")
    res = reviewer.post(f"/console/medical/{inquiry_id}/answer", data={"csrf_token": csrf, "text": "From the form."})
    assert res.status_code == 303 and res.headers["location"] == f"/console/medical/{inquiry_id}?done=answered"
    page = reviewer.get(res.headers["location"])
    assert "Answer sent to the HCP." in page.text and "reviewer's own words" in page.text
    assert chat.messages()[-1]["text"] == "From the form."
    assert world.inquiry(inquiry_id).reviewer_id == account.id


def test_an_approved_content_answer_goes_verbatim_with_its_approval_code(world: ReviewWorld, tmp_path: Path) -> None:
    item = world.load_content(tmp_path)
    chat, inquiry_id = _ask(world, f"how do I store it? {unique()}")
    reviewer, account, csrf = world.staff_client("medical_reviewer")
    page = reviewer.get(f"/console/medical/{inquiry_id}")
    assert f'value="{item["id"]}@1"' in page.text  # offered in the picker
    res = reviewer.post(f"/console/medical/{inquiry_id}/answer",
                        data={"csrf_token": csrf, "content": f"{item['id']}@1"})
    assert res.status_code == 303, res.text
    seen = chat.messages()[-1]
    assert seen["text"].startswith(item["body"]) and seen["text"].endswith("Ref: " + item["approval_code"])
    assert (seen["content_id"], seen["content_version"], seen["approval_code"]) == (item["id"], 1,
                                                                                     item["approval_code"])
    inquiry = world.inquiry(inquiry_id)
    assert inquiry.response == seen["text"] and inquiry.reviewer_id == account.id
    [event] = _audit(world, inquiry_id, "medical_inquiry.answered")
    assert event.data["kind"] == "approved_content" and event.data["approval_code"] == item["approval_code"]


def test_gated_content_is_refused_clearly_and_nothing_is_sent(world: ReviewWorld, tmp_path: Path) -> None:
    japan_only = world.load_content(tmp_path, markets=["JP"])
    chat, inquiry_id = _ask(world, f"gated question {unique()}")
    before = [m.id for m in world.messages_of(chat.conversation_id)]
    reviewer, account, csrf = world.staff_client("medical_reviewer")

    res = _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/answer", csrf,
                {"content_id": japan_only["id"], "version": 1})
    assert res.status_code == 409
    error = res.json()["error"]
    assert error["code"] == "content_gated" and "not approved for market US" in error["message"]
    page = reviewer.post(f"/console/medical/{inquiry_id}/answer",
                         data={"csrf_token": csrf, "content": f"{japan_only['id']}@1"})
    assert page.status_code == 409 and "not approved for market US" in page.text
    assert 'class="flash error"' in page.text

    inquiry = world.inquiry(inquiry_id)
    assert (inquiry.status, inquiry.response, inquiry.reviewer_id, inquiry.answered_at) == ("open", None, None, None)
    assert [m.id for m in world.messages_of(chat.conversation_id)] == before
    refusals = _audit(world, inquiry_id, "medical_inquiry.answer_refused")
    assert [(r.actor_id, r.data["code"]) for r in refusals] == [(account.id, "content_gated")] * 2


@pytest.mark.parametrize(("body", "fragment"), [
    ({"text": ""}, "either your own text or one approved content item"),
    ({"text": "   \n\t "}, "either your own text or one approved content item"),
    ({}, "either your own text or one approved content item"),
    ({"text": "x", "content_id": "CVX-001"}, "not both"),
    ({"text": "x" * (MAX_STAFF_TEXT + 1)}, f"longer than {MAX_STAFF_TEXT} characters"),
    ({"content_id": "NO-SUCH-ITEM"}, "there is no approved content item 'NO-SUCH-ITEM'"),
    ({"content_id": "C" * 500}, "not a content item id"),
    ({"text": 42}, "text:"),
    ({"text": "ok", "cc": "rep@example.com"}, "cc:"),
    ({"content_id": "CVX-001", "version": 0}, "version:"),
    ([], "must be a JSON object"),
])
def test_bad_answers_are_a_clear_4xx_and_change_nothing(world: ReviewWorld, body: Any, fragment: str) -> None:
    chat, inquiry_id = _ask(world, f"bad input question {unique()}")
    before = [m.id for m in world.messages_of(chat.conversation_id)]
    reviewer, _acc, csrf = world.staff_client("medical_reviewer")
    res = _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/answer", csrf, body)
    assert res.status_code == 422, res.text
    assert fragment in res.json()["error"]["message"]
    assert world.inquiry(inquiry_id).status == "open"
    assert [m.id for m in world.messages_of(chat.conversation_id)] == before


def test_a_body_that_is_not_json_is_refused(world: ReviewWorld) -> None:
    _chat, inquiry_id = _ask(world, f"not json question {unique()}")
    reviewer, _acc, csrf = world.staff_client("medical_reviewer")
    res = reviewer.post(f"/api/staff/medical/inquiries/{inquiry_id}/answer", content=b"text=hello",
                        headers={**JSON, "x-csrf-token": csrf, "content-type": "application/json"})
    assert res.status_code == 422 and "not valid JSON" in res.json()["error"]["message"]
    assert world.inquiry(inquiry_id).status == "open"


def test_without_the_csrf_token_nothing_is_answered(world: ReviewWorld) -> None:
    _chat, inquiry_id = _ask(world, f"csrf question {unique()}")
    reviewer, _acc, _csrf = world.staff_client("medical_reviewer")
    res = reviewer.post(f"/api/staff/medical/inquiries/{inquiry_id}/answer", json={"text": "hi"}, headers=JSON)
    assert res.status_code == 403
    assert world.inquiry(inquiry_id).status == "open"


def test_two_reviewers_answering_at_once_one_wins_and_the_other_is_told_who(world: ReviewWorld) -> None:
    chat, inquiry_id = _ask(world, f"race question {unique()}")
    reviewers = [world.staff_client("medical_reviewer") for _ in range(2)]
    barrier = threading.Barrier(2)
    results: dict[int, Any] = {}

    def answer(n: int) -> None:
        client, _acc, csrf = reviewers[n]
        barrier.wait()
        results[n] = _post(client, f"/api/staff/medical/inquiries/{inquiry_id}/answer", csrf,
                           {"text": f"answer from reviewer {n}"})

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409], codes
    winner = next(n for n, r in results.items() if r.status_code == 200)
    loser = results[1 - winner].json()["error"]
    winner_account = reviewers[winner][1]
    with world.factory() as s:
        from api.staff.models import StaffUser

        winner_name = s.get(StaffUser, winner_account.id).name  # type: ignore[union-attr]
    assert loser["code"] == "conflict" and f"already answered by {winner_name}" in loser["message"]
    assert world.inquiry(inquiry_id).reviewer_id == winner_account.id
    staff_msgs = [m.body for m in world.messages_of(chat.conversation_id) if m.sender_type == "staff"]
    assert staff_msgs == [f"answer from reviewer {winner}"]


def test_close_needs_a_reason_without_an_answer_and_a_closed_inquiry_cannot_be_answered(
        world: ReviewWorld) -> None:
    chat, inquiry_id = _ask(world, f"close question {unique()}")
    reviewer, account, csrf = world.staff_client("medical_reviewer")
    res = _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/close", csrf, {"reason": "  "})
    assert res.status_code == 422 and "say why" in res.json()["error"]["message"]
    res = _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/close", csrf, {"reason": "x" * 1001})
    assert res.status_code == 422
    assert world.inquiry(inquiry_id).status == "open"

    world.clock.advance(minutes=10)
    res = _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/close", csrf,
                {"reason": "Answered by phone", "expected_status": "open"})
    assert res.status_code == 200, res.text
    inquiry = world.inquiry(inquiry_id)
    assert (inquiry.status, inquiry.closed_by, inquiry.close_reason, inquiry.closed_at) == (
        "closed", account.id, "Answered by phone", world.clock.now())
    assert inquiry.response is None and inquiry.reviewer_id is None

    other, _acc2, csrf2 = world.staff_client("medical_reviewer")
    late = _post(other, f"/api/staff/medical/inquiries/{inquiry_id}/answer", csrf2, {"text": "too late"})
    assert late.status_code == 409 and "already closed by" in late.json()["error"]["message"]
    again = _post(other, f"/api/staff/medical/inquiries/{inquiry_id}/close", csrf2, {"reason": "dup"})
    assert again.status_code == 409
    assert not [m for m in world.messages_of(chat.conversation_id) if m.sender_type == "staff"]
    [closed] = _audit(world, inquiry_id, "medical_inquiry.closed")
    # the reviewer's own words live in staff_note; the audit chain holds only their id and hash
    assert closed.actor_id == account.id and "Answered by phone" not in json.dumps(closed.data)
    assert closed.data["note_ref"]["sha256"] == notes.digest("Answered by phone")
    with world.factory() as s:
        [shown] = notes.resolve(s, [closed.data])
    assert shown == {"reference": inquiry.reference, "answered": False, "reason": "Answered by phone"}


def test_an_answered_inquiry_can_be_closed_without_a_reason_from_the_page(world: ReviewWorld) -> None:
    _chat, inquiry_id = _ask(world, f"answer then close {unique()}")
    reviewer, account, csrf = world.staff_client("medical_reviewer")
    assert _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/answer", csrf,
                 {"text": "Here it is."}).status_code == 200
    stale = reviewer.post(f"/console/medical/{inquiry_id}/close",
                          data={"csrf_token": csrf, "expected_status": "open", "reason": ""})
    assert stale.status_code == 409 and "already answered by" in stale.text  # the page was out of date
    res = reviewer.post(f"/console/medical/{inquiry_id}/close",
                        data={"csrf_token": csrf, "expected_status": "answered", "reason": ""})
    assert res.status_code == 303
    page = reviewer.get(res.headers["location"])
    assert "Inquiry closed." in page.text and "Here it is." in page.text
    inquiry = world.inquiry(inquiry_id)
    assert (inquiry.status, inquiry.response, inquiry.closed_by) == ("closed", "Here it is.", account.id)


def test_every_console_read_and_action_on_an_inquiry_is_audited(world: ReviewWorld) -> None:
    _chat, inquiry_id = _ask(world, f"audit question {unique()}")
    reviewer, account, csrf = world.staff_client("medical_reviewer")
    with world.factory() as s:
        start = s.execute(select(func.max(AuditEvent.seq))).scalar_one()
    reviewer.get(f"/console/medical/{inquiry_id}")
    _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/answer", csrf, {"text": ""})
    _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/answer", csrf, {"text": "Done."})
    _post(reviewer, f"/api/staff/medical/inquiries/{inquiry_id}/close", csrf, {})
    with world.factory() as s:
        mine = list(s.execute(select(AuditEvent.action).where(
            AuditEvent.seq > start, AuditEvent.actor_id == account.id,
            AuditEvent.subject_type == "medical_inquiry").order_by(AuditEvent.seq)).scalars())
    assert mine == ["medical_inquiry.viewed", "medical_inquiry.answer_refused", "medical_inquiry.answered",
                    "medical_inquiry.closed"]
