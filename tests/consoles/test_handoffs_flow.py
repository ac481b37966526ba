"""The handoff workflow over HTTP: an HCP on web chat, staff in the Inbox console's JSON API."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api.audit.models import AuditEvent
from api.clock import FakeClock
from api.conversations.models import Conversation, Message
from api.db import unit_of_work
from api.handoffs import service as handoffs
from api.handoffs.copy import SCORE_THANKS
from api.handoffs.models import Handoff
from feedback import service as feedback
from feedback.models import SurveyResponse
from knowledge.service import load_library
from tests.consoles.conftest import StaffAccount
from tests.consoles.handoff_factory import (
    MONDAY_MORNING,
    SATURDAY,
    AppMaker,
    HcpChat,
    clocked_app,  # noqa: F401  (fixture)
    factory,
    new_chat,
    post_json,
    queue_handoff,
    staff_client,
    write_library,
)
from tests.fakes.rasa import FakeRasa

MakeStaff = Callable[..., StaffAccount]


def _hcp(client: TestClient) -> HcpChat:
    token = client.post("/api/webchat/sessions").json()["session_id"]
    with client.app.state.concierge.session_factory() as s:  # type: ignore[attr-defined]
        from api.conversations.service import get_by_session_token

        return HcpChat(token, get_by_session_token(s, token).id)


def _handoff_of(engine: Engine, chat: HcpChat) -> Handoff:
    with factory(engine)() as s:
        return s.execute(select(Handoff).where(Handoff.conversation_id == chat.conversation_id)
                         .order_by(Handoff.created_at.desc())).scalars().first()  # type: ignore[return-value]


def _url(handoff_id: str, action: str = "") -> str:
    return f"/api/staff/inbox/{handoff_id}" + (f"/{action}" if action else "")


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages]


def test_a_handoff_from_claim_to_close_over_http(clocked_app: AppMaker, make_staff: MakeStaff,  # noqa: F811
                                                 engine: Engine) -> None:
    clock = FakeClock(MONDAY_MORNING)
    hcp_client = clocked_app(clock, FakeRasa(mode="error"))  # Rasa down: the api itself hands off
    ann = make_staff("rep", name=f"Ann {uuid.uuid4().hex[:4]}")
    ben = make_staff("rep", name=f"Ben {uuid.uuid4().hex[:4]}")
    mo = make_staff("msl", name=f"Mo {uuid.uuid4().hex[:4]}")
    a, a_csrf = staff_client(clocked_app, clock, ann)
    b, b_csrf = staff_client(clocked_app, clock, ben)
    m, m_csrf = staff_client(clocked_app, clock, mo)

    chat = _hcp(hcp_client)
    chat.say(hcp_client, "I need samples of cardiovex")
    (ack,) = chat.say(hcp_client, "Talk to a person", payload="/request_human")
    assert "reference H-" in ack["text"]
    handoff = _handoff_of(engine, chat)
    assert handoff.status == "queued" and handoff.reason == "rasa_unavailable"
    assert handoff.id in [h["id"] for h in a.get("/api/staff/inbox").json()["queued"]]

    # CSRF: a claim without the token is refused and changes nothing.
    refused = a.post(_url(handoff.id, "claim"), headers={"accept": "application/json"}, json={})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert _handoff_of(engine, chat).status == "queued"

    claimed = post_json(a, _url(handoff.id, "claim"), a_csrf)
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == ann.id
    assert any("has joined" in t for t in _texts(chat.seen(hcp_client)))

    # Somebody else: told who has it, and may not speak in the conversation.
    lost = post_json(b, _url(handoff.id, "claim"), b_csrf)
    assert lost.status_code == 409
    assert lost.json()["error"]["message"].startswith(_name(engine, ann.id))
    not_yours = post_json(b, _url(handoff.id, "reply"), b_csrf, {"text": "hi from ben"})
    assert not_yours.status_code == 403 and _name(engine, ann.id) in not_yours.json()["error"]["message"]
    assert post_json(b, _url(handoff.id, "close"), b_csrf, {"outcome": "resolved"}).status_code == 403

    # Staff reply reaches the HCP; the HCP's answer reaches the console (relayed, not sent to Rasa).
    sent = post_json(a, _url(handoff.id, "reply"), a_csrf, {"text": "Hello doctor, Ann here. How many packs?"})
    assert sent.status_code == 200, sent.text
    seen = chat.seen(hcp_client)
    staff_msgs = [x for x in seen if x["sender"] == "staff"]
    assert staff_msgs and staff_msgs[-1]["text"] == "Hello doctor, Ann here. How many packs?"
    after = sent.json()["message"]["id"]
    assert chat.say(hcp_client, "Two packs please") == []
    polled = a.get(_url(handoff.id, "messages"), params={"after": after}).json()
    assert [x["body"] for x in polled["messages"]] == ["Two packs please"]
    assert polled["state"] == {"state": "human", "assigned_staff_id": ann.id, "handoff_status": "claimed",
                               "claimed_by": ann.id}

    # Release → Ben claims → transfers to the MSL team → Mo claims and hands back to the bot.
    assert post_json(a, _url(handoff.id, "release"), a_csrf).json()["status"] == "queued"
    assert post_json(b, _url(handoff.id, "claim"), b_csrf).status_code == 200
    moved = post_json(b, _url(handoff.id, "transfer"), b_csrf, {"to_target": "msl", "note": "clinical question"})
    assert moved.status_code == 200 and moved.json()["target"] == "msl" and moved.json()["status"] == "queued"
    assert any("medical science liaison" in t for t in _texts(chat.seen(hcp_client)))
    assert post_json(b, _url(handoff.id, "claim"), b_csrf).status_code == 403  # no longer the reps' queue
    assert post_json(m, _url(handoff.id, "claim"), m_csrf).status_code == 200
    back = post_json(m, _url(handoff.id, "hand-back"), m_csrf)
    assert back.status_code == 200 and back.json()["status"] == "handed_back"
    assert any("handed this conversation back" in t for t in _texts(chat.seen(hcp_client)))
    with factory(engine)() as s:
        conv = s.get(Conversation, chat.conversation_id)
        assert conv is not None and conv.state == "bot" and conv.assigned_staff_id is None
        actions = [e.action for e in s.execute(select(AuditEvent).where(AuditEvent.subject_id == handoff.id)
                                               .order_by(AuditEvent.seq)).scalars()]
        assert actions.count("handoff.claimed") == 3
        assert {"handoff.released", "handoff.transferred", "handoff.handed_back"} <= set(actions)
        actors = {e.actor_id for e in s.execute(select(AuditEvent).where(AuditEvent.subject_id == handoff.id,
                                                                         AuditEvent.actor_type == "staff")).scalars()}
        assert actors == {ann.id, ben.id, mo.id}

    # Asked again: a new handoff; closing it asks for CSAT, and the answer is kept though Rasa is down.
    clock.advance(minutes=5)
    chat.say(hcp_client, "Talk to a person", payload="/request_human")
    second = _handoff_of(engine, chat)
    assert second.id != handoff.id
    assert post_json(a, _url(second.id, "claim"), a_csrf).status_code == 200
    bad = post_json(a, _url(second.id, "close"), a_csrf, {"outcome": "whatever"})
    assert bad.status_code == 422 and "resolved" in bad.json()["error"]["message"]
    closed = post_json(a, _url(second.id, "close"), a_csrf, {"outcome": "resolved"})
    assert closed.status_code == 200 and closed.json()["outcome"] == "resolved"
    question = chat.seen(hcp_client)[-1]
    assert question["text"] == feedback.CSAT_QUESTIONS["handoff"]
    assert [b["title"] for b in question["buttons"]] == ["1", "2", "3", "4", "5"]
    (thanks,) = chat.say(hcp_client, "4", payload=question["buttons"][3]["payload"])
    assert thanks["text"] == SCORE_THANKS
    with factory(engine)() as s:
        survey = s.execute(select(SurveyResponse).where(SurveyResponse.conversation_id == chat.conversation_id,
                                                        SurveyResponse.kind == "csat")).scalar_one()
        assert (survey.score, survey.status) == (4, "answered")


def _name(engine: Engine, staff_id: str) -> str:
    with factory(engine)() as s:
        return handoffs.staff_name(s, staff_id)


def test_two_staff_claiming_at_once_exactly_one_wins_and_the_other_sees_who(
        clocked_app: AppMaker, make_staff: MakeStaff, engine: Engine) -> None:  # noqa: F811
    clock = FakeClock(MONDAY_MORNING)
    accounts = [make_staff("rep", name=f"Racer {i} {uuid.uuid4().hex[:4]}") for i in range(2)]
    clients = [staff_client(clocked_app, clock, acc) for acc in accounts]
    for _round in range(5):
        handoff_id = queue_handoff(engine, new_chat(engine, now=MONDAY_MORNING), now=MONDAY_MORNING)
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]

        def go(i: int, handoff_id: str = handoff_id, barrier: threading.Barrier = barrier,
               results: list[Any] = results) -> None:
            client, csrf = clients[i]
            barrier.wait()
            results[i] = post_json(client, _url(handoff_id, "claim"), csrf)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 409], [r.text for r in results]
        winner = next(i for i, r in enumerate(results) if r.status_code == 200)
        loser = results[1 - winner].json()["error"]
        assert loser["code"] == "already_claimed"
        assert _name(engine, accounts[winner].id) in loser["message"]
        assert loser["detail"]["claimed_by"] == accounts[winner].id
        with factory(engine)() as s:
            row = s.get(Handoff, handoff_id)
            assert row is not None and row.claimed_by == accounts[winner].id
            claims = s.execute(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.subject_id == handoff_id, AuditEvent.action == "handoff.claimed")).scalar_one()
            assert claims == 1


def test_approved_content_goes_out_verbatim_with_its_code_and_gated_items_are_refused(
        clocked_app: AppMaker, make_staff: MakeStaff, engine: Engine, tmp_path: Path) -> None:  # noqa: F811
    tag = uuid.uuid4().hex[:8].upper()
    ok_id, gated_id = f"INB-{tag}-1", f"INB-{tag}-2"
    base: dict[str, Any] = {
        "version": 1, "product": "cardiovex", "kind": "faq", "audience": ["hcp"], "status": "approved",
        "approved_at": "2026-01-01", "expires_at": "2027-12-31", "questions": [f"storage {tag}?"],
    }
    with unit_of_work(factory(engine)) as s:
        load_library(s, write_library(tmp_path, [
            {**base, "id": ok_id, "title": f"Storage {tag}", "markets": ["GB"], "approval_code": f"APP-{tag}-1",
             "body": f"Store below 30 C in the original pack ({tag})."},
            {**base, "id": gated_id, "title": f"US storage {tag}", "markets": ["US"],
             "approval_code": f"APP-{tag}-2", "body": f"US-only storage text ({tag})."},
        ]))
    clock = FakeClock(MONDAY_MORNING)
    hcp_client = clocked_app(clock)
    chat = _hcp(hcp_client)
    with unit_of_work(factory(engine)) as s:
        conv = s.get(Conversation, chat.conversation_id)
        assert conv is not None
        conv.market = "GB"
    handoff_id = queue_handoff(engine, chat, now=MONDAY_MORNING)
    rep = make_staff("rep")
    client, csrf = staff_client(clocked_app, clock, rep)

    found = client.get(_url(handoff_id, "content"), params={"q": f"storage {tag}"}).json()["items"]
    by_id = {i["content_id"]: i for i in found}
    assert by_id[ok_id]["sendable"] is True
    assert by_id[gated_id]["sendable"] is False and "market GB" in by_id[gated_id]["reason"]

    early = post_json(client, _url(handoff_id, "content"), csrf, {"content_id": ok_id, "version": 1})
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_claimed"
    assert post_json(client, _url(handoff_id, "claim"), csrf).status_code == 200
    sent = post_json(client, _url(handoff_id, "content"), csrf, {"content_id": ok_id, "version": 1})
    assert sent.status_code == 200, sent.text
    assert sent.json()["message"]["approval_code"] == f"APP-{tag}-1"
    got = [x for x in chat.seen(hcp_client) if x["content_id"] == ok_id]
    assert len(got) == 1 and got[0]["approval_code"] == f"APP-{tag}-1" and got[0]["sender"] == "staff"
    assert got[0]["text"].startswith(f"Store below 30 C in the original pack ({tag}).")
    assert got[0]["text"].endswith(f"Ref: APP-{tag}-1")

    before = _message_count(engine, chat)
    refused = post_json(client, _url(handoff_id, "content"), csrf, {"content_id": gated_id, "version": 1})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "content_gated"
    assert "not approved for market GB" in refused.json()["error"]["message"]
    assert _message_count(engine, chat) == before  # nothing queued
    with factory(engine)() as s:
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "staff.content_gated",
                                                   AuditEvent.subject_id == handoff_id)).scalar_one()
        assert event.actor_id == rep.id and event.data["content_id"] == gated_id


def _message_count(engine: Engine, chat: HcpChat) -> int:
    with factory(engine)() as s:
        return int(s.execute(select(func.count()).select_from(Message)
                             .where(Message.conversation_id == chat.conversation_id)).scalar_one())


def test_out_of_hours_the_hcp_chooses_a_callback_which_staff_see(
        clocked_app: AppMaker, make_staff: MakeStaff, engine: Engine) -> None:  # noqa: F811
    clock = FakeClock(SATURDAY)
    rasa = FakeRasa(mode="error")
    hcp_client = clocked_app(clock, rasa)
    chat = _hcp(hcp_client)
    (ack,) = chat.say(hcp_client, "Talk to a person", payload="/request_human")
    assert "not at work right now" in ack["text"] and "08:00 GMT on Mon 23 Nov" in ack["text"]
    callback = next(b for b in ack["buttons"] if b["title"] == "Call me back")
    calls_before = len(rasa.calls)
    (noted,) = chat.say(hcp_client, callback["title"], payload=callback["payload"])
    assert "call you back" in noted["text"]
    assert len(rasa.calls) == calls_before  # answered by the api, not Rasa
    handoff = _handoff_of(engine, chat)
    assert handoff.contact_preference == "callback"
    assert handoff.sla_due_at == handoffs.DEFAULT_HOURS.next_open(SATURDAY) + timedelta(hours=4)
    rep = make_staff("rep")
    client, _csrf = staff_client(clocked_app, clock, rep)
    listed = {h["id"]: h for h in client.get("/api/staff/inbox").json()["queued"]}
    assert listed[handoff.id]["contact_preference"] == "callback"
    page = client.get(f"/console/inbox/{handoff.id}")
    assert "the HCP asked for <strong>callback</strong> instead" in page.text


def test_with_rasa_down_the_api_handoff_uses_the_configured_staff_hours(
        clocked_app: AppMaker) -> None:  # noqa: F811
    # Saturday 10:00 UTC is inside these (weekend) hours: nobody is told "not at work".
    weekend = clocked_app(FakeClock(SATURDAY), FakeRasa(mode="error"), staff_hours="Sat-Sun 09:00-17:00",
                          staff_timezone="UTC")
    chat = _hcp(weekend)
    (ack,) = chat.say(weekend, "Talk to a person", payload="/request_human")
    assert "not at work right now" not in ack["text"]
    # The same moment with weekday-only hours is out of hours, and says when the team opens.
    weekdays = clocked_app(FakeClock(SATURDAY), FakeRasa(mode="error"), staff_hours="Mon-Fri 07:00-09:00",
                           staff_timezone="UTC")
    chat2 = _hcp(weekdays)
    (ack2,) = chat2.say(weekdays, "Talk to a person", payload="/request_human")
    assert "not at work right now" in ack2["text"] and "07:00" in ack2["text"]
