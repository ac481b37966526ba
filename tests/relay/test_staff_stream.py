"""The staff side of the live relay over real HTTP: live delivery, firewall, access, resume."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.audit.models import AuditEvent
from api.content import make_send_gate
from api.conversations import service as conversations
from api.conversations.models import InboxItem, InboxStatus, Message, MessageStatus
from api.db import unit_of_work
from api.outbox import WebchatSender, deliver_pending
from api.safety.firewall import WITHHELD_TEXT
from tests.relay.conftest import (
    Api,
    Chat,
    SseReader,
    StaffLogin,
    hcp_events_url,
    hcp_says,
    scripted_screen,
    staff_events_url,
    staff_reply,
)

SseFactory = Callable[..., SseReader]


def test_hcp_message_reaches_the_claiming_reps_stream_on_the_hint_not_the_poll(
        start_api: Callable[..., Api], staff_login: Callable[..., StaffLogin], chat: Callable[..., Chat],
        sse: SseFactory) -> None:
    api = start_api(poll_interval=30.0)  # a re-read would take 30 s: only a hint can be this fast
    rep = staff_login(api, "rep")
    c = chat(claimed_by=rep.id)
    stream = sse(staff_events_url(api, c.conversation_id), cookies=rep.cookies)
    assert stream.wait_status() == 200
    state = stream.wait_for(lambda e: e.event == "state").json()
    assert state == {"state": "human", "assigned_staff_id": rep.id}
    text = f"Can I have samples please {uuid.uuid4().hex[:6]}"
    sent_at = time.monotonic()
    hcp_says(api, c, text)
    ev = stream.wait_for(lambda e: e.event == "message" and text in e.data, timeout=5)
    assert ev.at - sent_at < 2.0
    msg = ev.json()
    assert msg["direction"] == "in" and msg["sender_type"] == "hcp" and msg["withheld"] is False
    assert ev.id == str(msg["id"])


def test_canary_ae_and_inquiry_content_never_reaches_a_reps_stream(
        start_api: Callable[..., Api], staff_login: Callable[..., StaffLogin], chat: Callable[..., Chat],
        sse: SseFactory, factory: sessionmaker[Session]) -> None:
    api = start_api()
    rep = staff_login(api, "rep")
    msl = staff_login(api, "msl")
    both = staff_login(api, "rep", "msl")  # anyone who is a rep gets the commercial view
    c = chat(claimed_by=rep.id)
    ae = f"CANARY-AE-{uuid.uuid4().hex[:12]} my patient had a seizure after the second dose"
    mi = f"CANARY-MI-{uuid.uuid4().hex[:12]} can I give cardiovex to a 9 year old"
    plain = f"and please send samples {uuid.uuid4().hex[:6]}"
    rep_stream = sse(staff_events_url(api, c.conversation_id), cookies=rep.cookies)
    both_stream = sse(staff_events_url(api, c.conversation_id), cookies=both.cookies)
    for text in (ae, mi, plain):
        hcp_says(api, c, text)
    msl_stream = sse(staff_events_url(api, c.conversation_id), cookies=msl.cookies)

    for stream in (rep_stream, both_stream, msl_stream):
        stream.wait_for(lambda e: e.event == "message" and plain in e.data, timeout=10)
    for stream in (rep_stream, both_stream):
        seen = stream.messages()
        assert ae.split()[0] not in stream.raw.decode() and mi.split()[0] not in stream.raw.decode()
        withheld = [m for m in seen if m["withheld"]]
        # the AE message, the inquiry, and the bot's acknowledgements of both
        assert len([m for m in withheld if m["direction"] == "in"]) == 2
        assert all(m["body"] == WITHHELD_TEXT for m in withheld)
        assert all(m["approval_code"] is None and m["buttons"] == [] for m in withheld)
        assert any(m["body"] == plain and not m["withheld"] for m in seen)
    medical_view = msl_stream.raw.decode()
    assert ae.split()[0] in medical_view and mi.split()[0] in medical_view
    assert not any(m["withheld"] for m in msl_stream.messages())

    # Who read the medical content is on record; the reps' streams are recorded as commercial views.
    with factory() as s:
        rows = s.execute(select(AuditEvent).where(AuditEvent.subject_id == c.conversation_id,
                                                  AuditEvent.action.like("relay.%"))).scalars().all()
    viewed = [r for r in rows if r.action == "relay.medical_content_viewed"]
    assert {r.actor_id for r in viewed} == {msl.id}
    opened = {(r.actor_id, r.data["view"]) for r in rows if r.action == "relay.stream_opened"}
    assert opened == {(rep.id, "commercial"), (both.id, "commercial"), (msl.id, "medical")}


def test_only_handed_off_conversations_stream_and_only_to_declared_roles(
        start_api: Callable[..., Api], staff_login: Callable[..., StaffLogin], chat: Callable[..., Chat],
        sse: SseFactory) -> None:
    api = start_api()
    rep = staff_login(api, "rep")
    reviewer = staff_login(api, "medical_reviewer")
    safety = staff_login(api, "safety")
    admin = staff_login(api, "admin")
    bot_only = chat(handoff=False)
    queued = chat()
    json_accept = {"accept": "application/json"}
    for url in (staff_events_url(api, bot_only.conversation_id), staff_events_url(api, uuid.uuid4().hex)):
        res = httpx.get(url, cookies=rep.cookies, headers=json_accept, timeout=10)
        assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"
    for who in (safety, admin):
        res = httpx.get(staff_events_url(api, queued.conversation_id), cookies=who.cookies, headers=json_accept,
                        timeout=10)
        assert res.status_code == 403
    anonymous = httpx.get(staff_events_url(api, queued.conversation_id), headers=json_accept, timeout=10)
    assert anonymous.status_code == 401
    # A queued (not yet claimed) handoff may be watched by the roles that work handoffs.
    for who in (rep, reviewer):
        stream = sse(staff_events_url(api, queued.conversation_id), cookies=who.cookies)
        assert stream.wait_status() == 200
        assert stream.wait_for(lambda e: e.event == "state").json()["state"] == "queued"


def test_reconnect_with_last_event_id_resumes_without_duplicates_or_gaps(
        start_api: Callable[..., Api], staff_login: Callable[..., StaffLogin], chat: Callable[..., Chat],
        sse: SseFactory) -> None:
    api = start_api()
    rep = staff_login(api, "rep")
    c = chat(claimed_by=rep.id)
    first = sse(staff_events_url(api, c.conversation_id), cookies=rep.cookies)
    hcp_says(api, c, "one")
    hcp_says(api, c, "two")
    first.wait_for(lambda e: e.event == "message" and '"two"' in e.data)
    ids = [m["id"] for m in first.messages()]
    assert [m["body"] for m in first.messages()] == ["one", "two"]
    first.close()
    hcp_says(api, c, "three")  # while disconnected
    # A reconnecting EventSource repeats the URL (after=0) and sends the last id it saw.
    again = sse(staff_events_url(api, c.conversation_id, after=0), cookies=rep.cookies,
                headers={"Last-Event-ID": str(ids[0])})
    again.wait_for(lambda e: e.event == "message" and '"three"' in e.data)
    hcp_says(api, c, "four")
    again.wait_for(lambda e: e.event == "message" and '"four"' in e.data)
    bodies = [m["body"] for m in again.messages()]
    assert bodies == ["two", "three", "four"]
    assert len({m["id"] for m in again.messages()}) == 3
    # ?after= alone works the same way; a malformed Last-Event-ID is refused clearly.
    after = sse(staff_events_url(api, c.conversation_id, after=ids[1]), cookies=rep.cookies)
    after.wait_for(lambda e: e.event == "message" and '"four"' in e.data)
    assert [m["body"] for m in after.messages()] == ["three", "four"]
    bad = httpx.get(staff_events_url(api, c.conversation_id), cookies=rep.cookies, timeout=10,
                    headers={"Last-Event-ID": "x1", "accept": "application/json"})
    assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["error"]["message"]


def test_staff_reply_reaches_the_hcp_stream_and_the_staff_stream_on_the_hint(
        start_api: Callable[..., Api], staff_login: Callable[..., StaffLogin], chat: Callable[..., Chat],
        sse: SseFactory) -> None:
    api = start_api(poll_interval=30.0)
    rep = staff_login(api, "rep")
    c = chat(claimed_by=rep.id)
    hcp = sse(hcp_events_url(api, c.token))
    staff = sse(staff_events_url(api, c.conversation_id), cookies=rep.cookies)
    assert hcp.wait_status() == 200 and staff.wait_status() == 200
    staff.wait_for(lambda e: e.event == "state")
    text = f"Hi, Sam here. {uuid.uuid4().hex[:6]}"
    sent_at = time.monotonic()
    staff_reply(api, rep, c, text)
    ev = hcp.wait_for(lambda e: e.event == "message" and text in e.data, timeout=5)
    assert ev.at - sent_at < 2.0
    assert ev.json()["sender_type"] == "staff" and ev.json()["direction"] == "out"
    staff.wait_for(lambda e: e.event == "message" and text in e.data, timeout=5)
    time.sleep(0.3)
    assert [m["body"] for m in hcp.messages()] == [text]


def test_an_unscreened_message_waits_for_the_screen_and_a_lost_hint_costs_one_poll(
        start_api: Callable[..., Api], staff_login: Callable[..., StaffLogin], chat: Callable[..., Chat],
        sse: SseFactory, factory: sessionmaker[Session]) -> None:
    """Rows written by a session without a bus (another process, no Redis) publish no hint: the
    stream still finds them on its periodic re-read. An inbound message the safety screen has not
    finished is held back — and so is everything after it — until the screen has decided."""
    api = start_api(poll_interval=0.3)
    rep = staff_login(api, "rep")
    c = chat(claimed_by=rep.id)
    stream = sse(staff_events_url(api, c.conversation_id), cookies=rep.cookies)
    stream.wait_for(lambda e: e.event == "state")
    canary = f"CANARY-AE-{uuid.uuid4().hex[:12]}"
    now = datetime.now(UTC)
    with unit_of_work(factory) as s:
        conv = conversations.get(s, c.conversation_id)
        stored = conversations.persist_inbound(s, conv, text=f"{canary} she fainted after the injection", now=now)
        inbound_id, inbox_id = stored.message.id, stored.inbox.id
        conversations.add_outbound(s, conv, text="Thanks, one moment.", now=now, sender_type="staff",
                                   sender_id=rep.id)
        deliver_pending(s, conv.id, senders={"webchat": WebchatSender()}, gate=make_send_gate("US"), now=now)
    time.sleep(1.5)  # five re-reads
    assert stream.messages() == []
    with unit_of_work(factory) as s:
        msg = s.get(Message, inbound_id)
        inbox = s.get(InboxItem, inbox_id)
        conv = conversations.get(s, c.conversation_id)
        assert msg is not None and inbox is not None
        scripted_screen(s, conv, msg, now)
        msg.status = MessageStatus.processed
        inbox.status = InboxStatus.done
    screened_at = time.monotonic()
    ev = stream.wait_for(lambda e: e.event == "message" and "one moment" in e.data, timeout=5)
    assert ev.at - screened_at < 1.5
    seen = stream.messages()
    assert [m["id"] for m in seen] == sorted(m["id"] for m in seen)
    assert seen[0]["id"] == inbound_id and seen[0]["withheld"] is True
    assert canary not in stream.raw.decode()


def test_logging_out_ends_an_open_stream(
        start_api: Callable[..., Api], staff_login: Callable[..., StaffLogin], chat: Callable[..., Chat],
        sse: SseFactory) -> None:
    api = start_api(heartbeat=0.5)
    rep = staff_login(api, "rep")
    c = chat(claimed_by=rep.id)
    stream = sse(staff_events_url(api, c.conversation_id), cookies=rep.cookies)
    stream.wait_for(lambda e: e.event == "state")
    res = httpx.post(f"{api.url}/console/logout", cookies=rep.cookies, data={"csrf_token": rep.csrf}, timeout=10)
    assert res.status_code == 303
    assert stream.wait_ended(timeout=5)
    again = httpx.get(staff_events_url(api, c.conversation_id), cookies=rep.cookies,
                      headers={"accept": "application/json"}, timeout=10)
    assert again.status_code == 401


def test_a_state_change_without_a_hint_reaches_the_stream_on_the_re_check(
        start_api: Callable[..., Api], staff_login: Callable[..., StaffLogin], chat: Callable[..., Chat],
        sse: SseFactory, factory: sessionmaker[Session]) -> None:
    api = start_api(poll_interval=0.3)
    rep = staff_login(api, "rep")
    c = chat(claimed_by=rep.id)
    stream = sse(staff_events_url(api, c.conversation_id), cookies=rep.cookies)
    assert stream.wait_for(lambda e: e.event == "state").json()["state"] == "human"
    with unit_of_work(factory) as s:  # e.g. another api process without Redis hands it back
        conv = conversations.get(s, c.conversation_id)
        conv.state = "bot"
        conv.assigned_staff_id = None
    ev = stream.wait_for(lambda e: e.event == "state" and '"bot"' in e.data, timeout=5)
    assert ev.json() == {"state": "bot", "assigned_staff_id": None}
    assert len([e for e in stream.events if e.event == "state"]) == 2
