"""The Inbox pages: queue with SLA badges, the handoff page, the claim form, and the firewall
(canary texts never reach a rep, in HTML or JSON; MSLs read them, audited)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.db import unit_of_work
from api.handoffs.models import Handoff
from tests.consoles.conftest import StaffAccount
from tests.consoles.handoff_factory import add_medical_messages, factory, new_chat, post_json, queue_handoff

LoggedIn = Callable[..., tuple[TestClient, StaffAccount, str]]
JSON = {"accept": "application/json"}


def _row(html: str, handoff_id: str) -> str:
    found = re.search(rf'<tr data-testid="handoff-row" data-handoff-id="{handoff_id}"[^>]*>(.*?)</tr>', html, re.S)
    assert found, f"handoff {handoff_id} not listed"
    return found.group(1)


def test_a_rep_never_sees_ae_or_inquiry_text_in_any_inbox_html_or_json(engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    chat = new_chat(engine, now=now)
    canaries = add_medical_messages(engine, chat, now=now)
    handoff_id = queue_handoff(engine, chat, target="rep", now=now, said=["and I would like samples too"])
    rep, _account, csrf = logged_in("rep")

    def fetch_all() -> list[str]:
        bodies = []
        for url in ("/console/inbox", f"/console/inbox/{handoff_id}"):
            page = rep.get(url)
            assert page.status_code == 200, page.text
            bodies.append(page.text)
        for url in ("/api/staff/inbox", f"/api/staff/inbox/{handoff_id}", f"/api/staff/inbox/{handoff_id}/messages",
                    f"/api/staff/inbox/{handoff_id}/content?q=cardiovex"):
            res = rep.get(url, headers=JSON)
            assert res.status_code == 200, res.text
            bodies.append(res.text)
        return bodies

    before_claim = fetch_all()
    claimed = post_json(rep, f"/api/staff/inbox/{handoff_id}/claim", csrf)
    assert claimed.status_code == 200
    sent = post_json(rep, f"/api/staff/inbox/{handoff_id}/reply", csrf, {"text": "Happy to help with samples."})
    for body in [*before_claim, *fetch_all(), claimed.text, sent.text]:
        assert canaries.ae not in body and canaries.inquiry not in body
    page = rep.get(f"/console/inbox/{handoff_id}").text
    assert page.count('data-testid="message-withheld"') == 2
    assert "routed to Medical/Safety; not shown" in page
    assert canaries.inquiry_reference in page  # that an inquiry exists (metadata) is shown
    assert "and I would like samples too" in page
    messages = rep.get(f"/api/staff/inbox/{handoff_id}/messages", headers=JSON).json()["messages"]
    withheld = [m for m in messages if m["withheld"]]
    assert len(withheld) == 2 and all(m["body"] is None for m in withheld)
    card = rep.get(f"/api/staff/inbox/{handoff_id}", headers=JSON).json()
    assert card["medical_content_withheld"] is True
    assert [set(i) for i in card["card"]["inquiries"]] == [{"reference", "status", "created_at"}]
    assert card["card"]["adverse_events"] == 1


def test_an_msl_reads_the_medical_messages_and_the_reading_is_audited(engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    chat = new_chat(engine, now=now)
    canaries = add_medical_messages(engine, chat, now=now)
    handoff_id = queue_handoff(engine, chat, target="msl", now=now)
    msl, account, _csrf = logged_in("msl")
    page = msl.get(f"/console/inbox/{handoff_id}").text
    assert canaries.ae in page and canaries.inquiry in page
    assert 'data-testid="message-withheld"' not in page
    with factory(engine)() as s:
        actions = {e.action for e in s.execute(select(AuditEvent).where(AuditEvent.actor_id == account.id)).scalars()}
    assert {"handoff.viewed", "conversation.medical_content_viewed", "medical_inquiry.viewed"} <= actions


def test_the_queue_shows_overdue_and_due_soon_badges(engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    ids = [queue_handoff(engine, new_chat(engine, now=now), now=now) for _ in range(3)]
    with unit_of_work(factory(engine)) as s:
        for handoff_id, due in zip(ids, (now - timedelta(hours=2), now + timedelta(minutes=20),
                                         now + timedelta(hours=3)), strict=True):
            row = s.get(Handoff, handoff_id)
            assert row is not None
            row.sla_due_at = due
    rep, _account, _csrf = logged_in("rep")
    html = rep.get("/console/inbox").text
    badges = [re.search(r'class="badge ([a-z-]+)" data-testid="sla-badge"', _row(html, i)) for i in ids]
    assert [b.group(1) if b else None for b in badges] == ["overdue", "due-soon", "ok"]
    listed = {h["id"]: h["sla"] for h in rep.get("/api/staff/inbox", headers=JSON).json()["queued"]}
    assert [listed[i] for i in ids] == ["overdue", "due-soon", "ok"]


def test_the_claim_form_needs_its_csrf_token_and_a_second_claim_names_the_holder(
        engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    handoff_id = queue_handoff(engine, new_chat(engine, now=now), now=now)
    first, first_account, first_csrf = logged_in("rep")
    second, _acc, second_csrf = logged_in("rep")
    assert first.post(f"/console/inbox/{handoff_id}/claim", data={}).status_code == 403
    ok = first.post(f"/console/inbox/{handoff_id}/claim", data={"csrf_token": first_csrf})
    assert ok.status_code == 303 and ok.headers["location"] == f"/console/inbox/{handoff_id}"
    taken = second.post(f"/console/inbox/{handoff_id}/claim", data={"csrf_token": second_csrf})
    assert taken.status_code == 409 and "Already taken" in taken.text
    with factory(engine)() as s:
        from api.staff.models import StaffUser

        holder = s.get(StaffUser, first_account.id)
        assert holder is not None and holder.name in taken.text
    page = first.get(f"/console/inbox/{handoff_id}")
    assert page.status_code == 200 and 'data-status="claimed"' in page.text


def test_a_rep_cannot_open_another_teams_handoff_and_unknown_ids_are_404(engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    mi_handoff = queue_handoff(engine, new_chat(engine, now=now), target="medical_information", now=now)
    rep, _account, csrf = logged_in("rep")
    assert rep.get(f"/console/inbox/{mi_handoff}").status_code == 403
    refused = post_json(rep, f"/api/staff/inbox/{mi_handoff}/claim", csrf)
    assert refused.status_code == 403 and "another team" in refused.json()["error"]["message"]
    ghost = uuid.uuid4().hex
    assert rep.get(f"/api/staff/inbox/{ghost}", headers=JSON).status_code == 404
    reviewer, _acc, reviewer_csrf = logged_in("medical_reviewer")
    assert post_json(reviewer, f"/api/staff/inbox/{mi_handoff}/claim", reviewer_csrf).status_code == 200


def test_bad_transfer_requests_are_clear_and_change_nothing(engine: Engine, logged_in: LoggedIn) -> None:
    now = datetime.now(UTC)
    handoff_id = queue_handoff(engine, new_chat(engine, now=now), now=now)
    rep, _account, csrf = logged_in("rep")
    assert post_json(rep, f"/api/staff/inbox/{handoff_id}/claim", csrf).status_code == 200
    _other, msl_account, _ = logged_in("msl")
    url = f"/api/staff/inbox/{handoff_id}/transfer"
    cases = [({}, 422, "choose a colleague or a team"), ({"to_target": "sales"}, 422, "unknown team"),
             ({"to_target": "rep"}, 422, "already with the rep team"),
             ({"to_staff_id": msl_account.id, "to_target": "rep"}, 422, "does not hold the rep role"),
             ({"to_staff_id": uuid.uuid4().hex}, 422, "no such active colleague"),
             ({"surprise": 1}, 422, "surprise")]
    for body, status, fragment in cases:
        res = post_json(rep, url, csrf, body)
        assert res.status_code == status and fragment in res.json()["error"]["message"], (body, res.text)
    with factory(engine)() as s:
        row = s.get(Handoff, handoff_id)
        assert row is not None and (row.target, row.status) == ("rep", "claimed")
    moved = post_json(rep, url, csrf, {"to_staff_id": msl_account.id})  # the MSL's only inbox team
    assert moved.status_code == 200
    assert (moved.json()["target"], moved.json()["claimed_by"]) == ("msl", msl_account.id)
