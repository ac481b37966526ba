"""Inbox triage facts and the nav badge's count: last-message previews under the firewall,
waiting time, the opted-out flag, and /api/staff/attention (who may poll it, what it counts)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.db import unit_of_work
from api.handoffs.attention import MEDICAL_PREVIEW, PREVIEW_CHARS
from api.safety.firewall import WITHHELD_NOTE
from api.safety.screen import ScreenResult
from api.safety.service import apply
from tests.consoles.conftest import StaffAccount
from tests.consoles.handoff_factory import (
    add_medical_messages,
    factory,
    mark_screened,
    new_chat,
    post_json,
    queue_handoff,
)

LoggedIn = Callable[..., tuple[TestClient, StaffAccount, str]]
JSON = {"accept": "application/json"}


def _queued_row(client: TestClient, handoff_id: str) -> dict[str, Any]:
    res = client.get("/api/staff/inbox", headers=JSON)
    assert res.status_code == 200, res.text
    body = res.json()
    rows = [r for r in body["queued"] + body["mine"] if r["id"] == handoff_id]
    assert len(rows) == 1, f"{handoff_id} is not in the queue"
    row: dict[str, Any] = rows[0]
    return row


def _hcp_says(engine: Engine, conversation_id: str, text: str, *, now: datetime, screened: bool = True,
              result: ScreenResult | None = None) -> None:
    with unit_of_work(factory(engine)) as s:
        conv = s.get(Conversation, conversation_id)
        assert conv is not None
        msg = conversations.persist_inbound(s, conv, text=text, now=now).message
        if result is not None:
            apply(s, conversation=conv, message=msg, result=result, now=now)
        if screened:
            mark_screened(s, msg)


def test_a_reps_preview_of_a_medical_message_is_the_placeholder_never_the_text(
        engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    chat = new_chat(engine, now=now)
    handoff_id = queue_handoff(engine, chat, target="rep", now=now, said=["hello there, a question on access"])
    canaries = add_medical_messages(engine, chat, now=now)  # the newest HCP message is an off-label question
    rep, _account, _csrf = logged_in("rep")

    row = _queued_row(rep, handoff_id)
    assert row["preview_withheld"] is True
    assert row["preview"] == WITHHELD_NOTE and row["preview_from"] == "HCP"
    page = rep.get("/console/inbox").text
    for text in (rep.get("/api/staff/inbox", headers=JSON).text, page):
        assert canaries.ae not in text and canaries.inquiry not in text

    # a later ordinary message becomes the preview
    _hcp_says(engine, chat.conversation_id, "could somebody ring me after four", now=now)
    row = _queued_row(rep, handoff_id)
    assert row["preview"] == "could somebody ring me after four" and row["preview_withheld"] is False


def test_an_msl_preview_does_not_show_medical_text_either(engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    chat = new_chat(engine, now=now)
    canaries = add_medical_messages(engine, chat, now=now)
    handoff_id = queue_handoff(engine, chat, target="msl", now=now)
    msl, _account, _csrf = logged_in("msl")
    row = _queued_row(msl, handoff_id)
    assert row["preview"] == MEDICAL_PREVIEW and row["preview_withheld"] is True
    # (the summary is the MSL's to read; the preview sends them to the audited handoff view)
    assert canaries.inquiry not in row["preview"] and canaries.ae not in row["preview"]


def test_a_message_the_screen_has_not_finished_is_not_previewed(engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    chat = new_chat(engine, now=now)
    handoff_id = queue_handoff(engine, chat, target="rep", now=now, said=["first thing I wrote"])
    rep, _account, _csrf = logged_in("rep")  # (the app is up: it replays pending work only as it starts)
    pending = f"still being screened {uuid.uuid4().hex[:8]}"
    _hcp_says(engine, chat.conversation_id, pending, now=now, screened=False)
    row = _queued_row(rep, handoff_id)
    assert row["preview"] == "first thing I wrote"
    page = rep.get("/console/inbox").text
    row_start = page.index(f'data-handoff-id="{handoff_id}"')
    preview_cell = page[page.index('data-testid="preview"', row_start):]
    assert pending not in preview_cell[:preview_cell.index("</td>")]


def test_a_long_preview_is_cut_and_flattened(engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    chat = new_chat(engine, now=now)
    long_text = "line one\n\n" + "word " * 200
    handoff_id = queue_handoff(engine, chat, target="rep", now=now, said=[long_text])
    rep, _account, _csrf = logged_in("rep")
    preview = _queued_row(rep, handoff_id)["preview"]
    assert len(preview) <= PREVIEW_CHARS and preview.endswith("…") and "\n" not in preview
    assert preview.startswith("line one word word")


def test_waiting_time_counts_from_the_handoff_then_from_the_unanswered_hcp_message(
        engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    opened = now - timedelta(minutes=42)
    chat = new_chat(engine, now=opened)
    handoff_id = queue_handoff(engine, chat, target="rep", now=opened, said=["can someone help me"])
    rep, _account, csrf = logged_in("rep")
    row = _queued_row(rep, handoff_id)
    assert 42 * 60 <= row["waiting_seconds"] < 44 * 60
    assert "42 min" in rep.get("/console/inbox").text or "43 min" in rep.get("/console/inbox").text

    assert post_json(rep, f"/api/staff/inbox/{handoff_id}/claim", csrf).status_code == 200
    # held, the HCP's message from 42 minutes ago is still unanswered by a person
    assert _queued_row(rep, handoff_id)["waiting_seconds"] >= 42 * 60
    sent = post_json(rep, f"/api/staff/inbox/{handoff_id}/reply", csrf, {"text": "Hello, I can help with that."})
    assert sent.status_code == 200, sent.text
    row = _queued_row(rep, handoff_id)
    assert row["waiting_seconds"] is None and row["waiting_since"] is None
    assert row["preview_from"] == "Staff"
    _hcp_says(engine, chat.conversation_id, "thanks, one more thing", now=datetime.now(UTC))
    assert 0 <= _queued_row(rep, handoff_id)["waiting_seconds"] < 120


def test_a_stop_shows_the_opted_out_flag_and_a_start_clears_it(engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    chat = new_chat(engine, now=now)
    handoff_id = queue_handoff(engine, chat, target="rep", now=now, said=["please have a rep call me"])
    rep, _account, _csrf = logged_in("rep")
    assert _queued_row(rep, handoff_id)["opted_out"] is False
    assert 'data-testid="opted-out"' not in rep.get(f"/console/inbox/{handoff_id}").text

    _hcp_says(engine, chat.conversation_id, "STOP", now=now, result=ScreenResult(opt_out=True))
    assert _queued_row(rep, handoff_id)["opted_out"] is True
    queue_page = rep.get("/console/inbox").text
    row_start = queue_page.index(f'data-handoff-id="{handoff_id}"')
    row_html = queue_page[row_start:queue_page.index("</tr>", row_start)]
    assert 'data-opted-out="yes"' in row_html and 'data-testid="opted-out"' in row_html
    detail = rep.get(f"/console/inbox/{handoff_id}").text
    assert 'data-testid="opted-out"' in detail and "opted out" in detail
    assert rep.get(f"/api/staff/inbox/{handoff_id}", headers=JSON).json()["handoff"]["opted_out"] is True

    _hcp_says(engine, chat.conversation_id, "START", now=now, result=ScreenResult(opt_in=True))
    assert _queued_row(rep, handoff_id)["opted_out"] is False


def test_the_attention_count_grows_with_a_new_handoff_for_the_staff_members_team_only(
        engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    rep, _account, _csrf = logged_in("rep")
    before = rep.get("/api/staff/attention", headers=JSON)
    assert before.status_code == 200, before.text
    counted = before.json()["queued"]

    for_msl = queue_handoff(engine, new_chat(engine, now=now), target="msl", now=now)
    after_msl = rep.get("/api/staff/attention", headers=JSON).json()
    assert after_msl["queued"] == counted and for_msl not in {r["id"] for r in after_msl["recent"]}

    for_rep = queue_handoff(engine, new_chat(engine, now=now), target="rep", now=now)
    after = rep.get("/api/staff/attention", headers=JSON).json()
    assert after["queued"] == counted + 1
    newest = after["recent"][0]
    assert newest["id"] == for_rep and newest["target"] == "rep" and newest["reference"]


def test_the_attention_count_is_for_inbox_staff_only(engine: Engine, logged_in: LoggedIn,
                                                      console: TestClient) -> None:
    safety, _account, _csrf = logged_in("safety")
    assert safety.get("/api/staff/attention", headers=JSON).status_code == 403
    assert console.get("/api/staff/attention", headers=JSON).status_code == 401
    # the nav badge is drawn only for staff who have the Inbox in their nav
    assert 'data-testid="nav-badge"' not in safety.get("/console/safety").text
    rep, _account, _csrf = logged_in("rep")
    assert 'data-testid="nav-badge"' in rep.get("/console/requests").text


def test_the_batched_firewall_rule_marks_what_the_per_conversation_rule_marks(engine: Engine) -> None:
    from sqlalchemy import select

    from api.conversations.models import Message
    from api.safety import firewall

    now = datetime.now(UTC)
    medical_chat, plain_chat = new_chat(engine, now=now), new_chat(engine, now=now)
    add_medical_messages(engine, medical_chat, now=now)
    queue_handoff(engine, medical_chat, target="msl", now=now, said=["and a delivery question"])
    queue_handoff(engine, plain_chat, target="rep", now=now, said=["only about the delivery date"])
    with factory(engine)() as s:
        by_conv = {c: list(s.execute(select(Message).where(Message.conversation_id == c)
                                     .order_by(Message.id)).scalars())
                   for c in (medical_chat.conversation_id, plain_chat.conversation_id)}
        one_by_one = set().union(*(firewall.medical_ids(s, c, rows) for c, rows in by_conv.items()))
        together = firewall.medical_ids_many(s, by_conv)
        assert together == one_by_one
        assert len(together) == 2 and together <= {m.id for m in by_conv[medical_chat.conversation_id]}
