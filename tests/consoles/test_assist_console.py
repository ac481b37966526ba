"""Agent assist over HTTP: the Inbox's suggested replies (real knowledge base, the bot's gate) sent
verbatim in one click, and snippets from the content console to a rep's reply box."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.clock import FakeClock
from api.conversations.models import Message
from api.db import unit_of_work
from knowledge.service import load_library
from tests.consoles.conftest import StaffAccount, login
from tests.consoles.handoff_factory import (
    MONDAY_MORNING,
    AppMaker,
    clocked_app,  # noqa: F401  (fixture)
    factory,
    new_chat,
    post_json,
    queue_handoff,
    staff_client,
    write_library,
)

JSON = {"accept": "application/json"}


def _items(tag: str) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"version": 1, "product": f"prod{tag.lower()}", "kind": "faq", "audience": ["hcp"],
                            "status": "approved", "approved_at": "2026-01-01", "expires_at": "2027-12-31"}
    return [
        {**base, "id": f"AC-{tag}-GB", "title": "Vialtrex travel with pens", "markets": ["GB"],
         "approval_code": f"APP-AC-{tag}-GB", "questions": ["Can my patient take Vialtrex pens on a plane?"],
         "body": "Vialtrex pens may be carried in hand luggage on flights; keep them in their cool pouch."},
        {**base, "id": f"AC-{tag}-US", "title": "Vialtrex air travel (US)", "markets": ["US"],
         "approval_code": f"APP-AC-{tag}-US", "questions": ["Can my patient take Vialtrex pens on a plane?"],
         "body": "Vialtrex pens can travel in carry-on bags under TSA rules."},
    ]


def _claimed(clocked_app: AppMaker, engine: Engine, make_staff: Any, tmp_path: Path,  # noqa: F811
             said: list[str]) -> tuple[TestClient, str, str, str]:
    tag = uuid.uuid4().hex[:6].upper()
    with unit_of_work(factory(engine)) as s:
        load_library(s, write_library(tmp_path, _items(tag)), actor="tester")
    chat = new_chat(engine, now=MONDAY_MORNING, market="GB")
    handoff_id = queue_handoff(engine, chat, target="rep", now=MONDAY_MORNING, said=said)
    clock = FakeClock(MONDAY_MORNING)
    rep, csrf = staff_client(clocked_app, clock, make_staff("rep"))
    return rep, csrf, handoff_id, tag


def test_the_holder_gets_gated_suggestions_and_insert_sends_the_item_verbatim(
        clocked_app: AppMaker, engine: Engine, make_staff: Any, tmp_path: Path) -> None:  # noqa: F811
    rep, csrf, handoff_id, tag = _claimed(clocked_app, engine, make_staff, tmp_path,
                                          ["hello", "can my patient bring vialtrex pens on a plane?"])
    before = rep.get(f"/api/staff/inbox/{handoff_id}/suggestions", headers=JSON)
    assert before.status_code == 409 and "claim" in before.json()["error"]["message"]
    assert post_json(rep, f"/api/staff/inbox/{handoff_id}/claim", csrf).status_code == 200

    res = rep.get(f"/api/staff/inbox/{handoff_id}/suggestions", headers=JSON)
    assert res.status_code == 200, res.text
    items = res.json()["items"]
    ids = [i["content_id"] for i in items]
    assert 1 <= len(items) <= 3
    assert ids[0] == f"AC-{tag}-GB"
    assert f"AC-{tag}-US" not in ids  # the HCP is in GB: the US item is gated, never suggested
    with factory(engine)() as s:
        shown = s.scalars(select(AuditEvent).where(AuditEvent.action == "handoff.suggestions_shown",
                                                   AuditEvent.subject_id == handoff_id)).one()
        assert [i["content_id"] for i in shown.data["items"]] == ids

    sent = post_json(rep, f"/api/staff/inbox/{handoff_id}/content", csrf,
                     {"content_id": items[0]["content_id"], "version": items[0]["version"]})
    assert sent.status_code == 200, sent.text
    message = sent.json()["message"]
    assert message["approval_code"] == f"APP-AC-{tag}-GB"
    assert message["body"].startswith(_items(tag)[0]["body"])
    assert message["body"].endswith(f"Ref: APP-AC-{tag}-GB")

    # a forged insert of the gated item is refused at send time, and nothing is queued
    gated = post_json(rep, f"/api/staff/inbox/{handoff_id}/content", csrf, {"content_id": f"AC-{tag}-US", "version": 1})
    assert gated.status_code == 409 and gated.json()["error"]["code"] == "content_gated"
    with factory(engine)() as s:
        assert s.scalars(select(Message).where(Message.content_id == f"AC-{tag}-US")).all() == []


def test_snippets_go_from_a_draft_to_a_reps_reply_box_and_stop_when_withdrawn(
        clocked_app: AppMaker, engine: Engine, make_staff: Any, tmp_path: Path) -> None:  # noqa: F811
    clock = FakeClock(MONDAY_MORNING)
    author, author_csrf = staff_client(clocked_app, clock, make_staff("content_admin"))
    checker, checker_csrf = staff_client(clocked_app, clock, make_staff("content_admin"))
    code = f"WAIT-{uuid.uuid4().hex[:6].upper()}"
    body = "Thanks for waiting <b>Doctor</b>; I am checking this with our team and will reply within the hour."
    form = {"csrf_token": author_csrf, "code": code, "title": "Checking", "market": "", "valid_from": "2026-01-01",
            "valid_to": "2027-01-01"}

    # bad input: a clear message, and the page keeps what was typed
    for bad, message in (({"body": "x" * 10_000}, "longer than 2000 characters"),
                         ({"body": body, "valid_to": "next year"}, "is not a date"),
                         ({"body": "   "}, "the text is empty")):
        page = author.post("/console/content/snippets", data={**form, **bad})
        assert page.status_code == 422, page.text
        assert message in page.text
        assert f'value="{code}"' in page.text
    page = author.post("/console/content/snippets", data={**form, "body": body, "valid_to": "next year"})
    assert "Thanks for waiting &lt;b&gt;Doctor&lt;/b&gt;" in page.text  # kept, and escaped

    saved = author.post("/console/content/snippets", data={**form, "body": body})
    assert saved.status_code == 303
    own = author.get(f"/console/content/snippets/{code}")
    assert "another content admin approves it" in own.text and 'data-testid="snippet-approve"' not in own.text
    snippet_id = re.search(rf'/console/content/snippets/{code}/([0-9a-f]+)/approve', checker.get(
        f"/console/content/snippets/{code}").text).group(1)  # type: ignore[union-attr]
    refused = author.post(f"/console/content/snippets/{code}/{snippet_id}/approve", data={"csrf_token": author_csrf})
    assert refused.status_code == 403 and "other than its author" in refused.text
    ok = checker.post(f"/console/content/snippets/{code}/{snippet_id}/approve", data={"csrf_token": checker_csrf})
    assert ok.status_code == 303

    # a rep holding a handoff lists it and inserts it; the reply goes out as the rep's own words
    rep, csrf, handoff_id, _tag = _claimed(clocked_app, engine, make_staff, tmp_path, ["hi"])
    assert rep.get(f"/api/staff/inbox/{handoff_id}/snippets", headers=JSON).status_code == 403
    post_json(rep, f"/api/staff/inbox/{handoff_id}/claim", csrf)
    listed = rep.get(f"/api/staff/inbox/{handoff_id}/snippets", headers=JSON).json()["items"]
    assert snippet_id in [s["id"] for s in listed]
    inserted = post_json(rep, f"/api/staff/inbox/{handoff_id}/snippets/{snippet_id}/insert", csrf)
    assert inserted.status_code == 200 and inserted.json()["body"] == body
    reply = post_json(rep, f"/api/staff/inbox/{handoff_id}/reply", csrf, {"text": inserted.json()["body"]})
    assert reply.status_code == 200 and reply.json()["message"]["sender_type"] == "staff"

    withdrawn = checker.post(f"/console/content/snippets/{code}/{snippet_id}/withdraw",
                             data={"csrf_token": checker_csrf, "reason": "wording under review"})
    assert withdrawn.status_code == 303
    again = post_json(rep, f"/api/staff/inbox/{handoff_id}/snippets/{snippet_id}/insert", csrf)
    assert again.status_code == 409
    assert again.json()["error"]["message"] == f"snippet {code} cannot be used: it is withdrawn"
    assert snippet_id not in [s["id"] for s in rep.get(f"/api/staff/inbox/{handoff_id}/snippets",
                                                           headers=JSON).json()["items"]]
    with factory(engine)() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.subject_id == snippet_id)
                            .order_by(AuditEvent.seq)).all()
    assert actions == ["snippet.drafted", "snippet.approved", "snippet.inserted", "snippet.withdrawn",
                       "snippet.insert_refused"]


def test_unknown_handoffs_and_snippets_are_404_and_a_colleague_cannot_use_anothers_handoff(
        clocked_app: AppMaker, engine: Engine, make_staff: Any, tmp_path: Path) -> None:  # noqa: F811
    rep, csrf, handoff_id, _tag = _claimed(clocked_app, engine, make_staff, tmp_path, ["hello there"])
    post_json(rep, f"/api/staff/inbox/{handoff_id}/claim", csrf)
    assert rep.get("/api/staff/inbox/nope/suggestions", headers=JSON).status_code == 404
    missing = post_json(rep, f"/api/staff/inbox/{handoff_id}/snippets/{'f' * 40}/insert", csrf)
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "no such snippet"
    other, _other_csrf = staff_client(clocked_app, FakeClock(MONDAY_MORNING), make_staff("rep"))
    for res in (other.get(f"/api/staff/inbox/{handoff_id}/suggestions", headers=JSON),
                other.get(f"/api/staff/inbox/{handoff_id}/snippets", headers=JSON)):
        assert res.status_code == 403 and "holds this conversation" in res.json()["error"]["message"]


def test_only_content_admins_manage_snippets(clocked_app: AppMaker, make_staff: Any) -> None:  # noqa: F811
    clock = FakeClock(MONDAY_MORNING)
    rep_account: StaffAccount = make_staff("rep")
    rep = clocked_app(clock)
    csrf = login(rep, rep_account)
    assert rep.get("/console/content/snippets").status_code == 403
    res = rep.post("/console/content/snippets", data={"csrf_token": csrf, "code": "X-1", "title": "t", "body": "b",
                                                      "valid_from": "2026-01-01", "valid_to": "2027-01-01"})
    assert res.status_code == 403
