"""The WhatsApp outbox dispatcher against the fake Twilio on loopback."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.audit.models import AuditEvent
from api.channels.whatsapp import service as wa
from api.channels.whatsapp.client import TwilioClient
from api.channels.whatsapp.models import WhatsappPart, WhatsappSend
from api.clock import Clock, FakeClock, SystemClock
from api.content import make_send_gate
from api.conversations import service as conversations
from api.conversations.models import Conversation, Message, OutboxItem
from api.db import unit_of_work
from api.outbox_worker import SENDING, DispatchPolicy, OutboxDispatcher
from api.safety import service as safety
from tests.channels.conftest import PUBLIC_URL, new_number
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, WHATSAPP_FROM, FakeTwilio, SentRecord


def _dispatcher(factory: sessionmaker[Session], url: str, clock: Clock, *, templates: dict[str, str] | None = None,
                max_attempts: int = 30, timeout: float = 2.0) -> OutboxDispatcher:
    client = TwilioClient(api_url=url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, timeout=timeout)
    return OutboxDispatcher(
        factory, client, clock, make_send_gate("US"), from_number=WHATSAPP_FROM, templates=templates or {},
        status_callback_url=PUBLIC_URL + "/webhooks/twilio/status",
        policy=DispatchPolicy(max_attempts=max_attempts, retry_base=0.01, retry_max=0.05, lease=30,
                              poll_interval=0.05),
    )


def _deliver(dispatcher: OutboxDispatcher, conv_ids: set[str], timeout: float = 60.0) -> None:
    async def run() -> None:
        try:
            await dispatcher.drain(timeout=timeout, conversation_ids=conv_ids)
        finally:
            await dispatcher.close()

    asyncio.run(run())


def _open_conversation(factory: sessionmaker[Session], now: datetime, *, address: str | None = None,
                       last_inbound: datetime | None = None) -> tuple[str, str]:
    address = address or new_number()
    with unit_of_work(factory) as s:
        conv = wa.conversation_for(s, address, now=now, market="US")
        conv.last_inbound_at = last_inbound or now
        return conv.id, address


def _queue(factory: sessionmaker[Session], conv_id: str, texts: list[str], now: datetime,
           buttons: list[dict[str, str]] | None = None) -> list[int]:
    with unit_of_work(factory) as s:
        conv = s.get(Conversation, conv_id)
        assert conv is not None
        return [conversations.add_outbound(s, conv, text=t, now=now + timedelta(microseconds=i),
                                           buttons=buttons).id for i, t in enumerate(texts)]


def _rows(factory: sessionmaker[Session], conv_id: str) -> list[tuple[str, str, int]]:
    with factory() as s:
        return [(r.status, m.status, r.attempts) for r, m in s.execute(
            select(OutboxItem, Message).join(Message, Message.id == OutboxItem.message_id)
            .where(OutboxItem.conversation_id == conv_id).order_by(OutboxItem.message_id)).all()]


def _actions(factory: sessionmaker[Session], message_id: int) -> list[str]:
    with factory() as s:
        return list(s.execute(select(AuditEvent.action).where(AuditEvent.subject_type == "message",
                                                              AuditEvent.subject_id == str(message_id))
                              .order_by(AuditEvent.seq)).scalars())


def test_with_30_percent_of_calls_failing_every_message_is_delivered_once_in_order(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = SystemClock()
    now = clock.now()
    fake_twilio.fail_ratio(0.3, seed=11)
    expected: dict[str, list[str]] = {}
    conv_ids: set[str] = set()
    for c in range(20):
        conv_id, address = _open_conversation(factory, now)
        texts = [f"conversation {c} message {i}" for i in range(10)]
        _queue(factory, conv_id, texts, now)
        expected[address] = texts
        conv_ids.add(conv_id)
    _deliver(_dispatcher(factory, twilio_url, clock, timeout=0.25), conv_ids)
    assert {k: fake_twilio.failures.get(k, 0) > 0 for k in ("429", "500", "timeout")} == \
        {"429": True, "500": True, "timeout": True}
    for address, texts in expected.items():
        assert fake_twilio.bodies_to(address) == texts  # exactly once each, in order
    for conv_id in conv_ids:
        assert {(row, msg) for row, msg, _ in _rows(factory, conv_id)} == {("sent", "sent")}
    attempts = [a for cid in conv_ids for _, _, a in _rows(factory, cid)]
    assert max(attempts) > 1


def test_a_send_that_timed_out_after_reaching_twilio_is_adopted_not_sent_again(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = SystemClock()
    conv_id, address = _open_conversation(factory, clock.now())
    [mid] = _queue(factory, conv_id, ["only once, please"], clock.now())
    fake_twilio.fail_next(1, "timeout")
    _deliver(_dispatcher(factory, twilio_url, clock, timeout=0.25), {conv_id})
    assert fake_twilio.bodies_to(address) == ["only once, please"]
    with factory() as s:
        msg = s.get(Message, mid)
        assert msg is not None and msg.status == "sent"
        assert msg.channel_message_id == next(m.sid for m in fake_twilio.sent if m.to == address)


def test_a_row_left_in_flight_by_a_crash_is_looked_up_and_not_resent(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = SystemClock()
    now = clock.now()
    conv_id, address = _open_conversation(factory, now)
    [mid] = _queue(factory, conv_id, ["sent just before the crash"], now)
    # The previous process claimed the row, Twilio accepted the message, then the process died.
    fake_twilio.sent.append(SentRecord("SM" + "c" * 32, address, WHATSAPP_FROM, "sent just before the crash",
                                       None, None, None, now))
    with unit_of_work(factory) as s:
        row = s.execute(select(OutboxItem).where(OutboxItem.message_id == mid)).scalar_one()
        row.status, row.attempts, row.next_attempt_at = SENDING, 1, now - timedelta(seconds=1)
    _deliver(_dispatcher(factory, twilio_url, clock), {conv_id})
    assert fake_twilio.bodies_to(address) == ["sent just before the crash"]
    with factory() as s:
        msg = s.get(Message, mid)
        assert msg is not None and (msg.status, msg.channel_message_id) == ("sent", "SM" + "c" * 32)


def test_a_message_is_dead_after_max_attempts_and_the_next_one_then_goes(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = SystemClock()
    conv_id, address = _open_conversation(factory, clock.now())
    first, second = _queue(factory, conv_id, ["doomed", "after the dead one"], clock.now())
    fake_twilio.fail_next(3, "500")
    _deliver(_dispatcher(factory, twilio_url, clock, max_attempts=3), {conv_id})
    assert _rows(factory, conv_id) == [("dead", "failed", 3), ("sent", "sent", 1)]
    assert fake_twilio.bodies_to(address) == ["after the dead one"]
    assert "outbox.dead" in _actions(factory, first)
    with factory() as s:
        dead = [r.message_id for r in wa.list_undeliverable(s, statuses=("dead",))]
    assert first in dead and second not in dead


def test_a_permanent_rejection_is_dead_at_once(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = SystemClock()
    now = clock.now()
    with unit_of_work(factory) as s:  # an address Twilio refuses (not a WhatsApp number)
        conv = Conversation(channel="whatsapp", address=f"+1555{now.microsecond:07d}", state="bot", market="US",
                            audience="hcp", failed_turns=0, created_at=now, last_inbound_at=now)
        s.add(conv)
        s.flush()
        conv_id = conv.id
    _queue(factory, conv_id, ["cannot go"], now)
    _deliver(_dispatcher(factory, twilio_url, clock), {conv_id})
    assert _rows(factory, conv_id) == [("dead", "failed", 1)]
    with factory() as s:
        send = s.execute(select(WhatsappSend).where(WhatsappSend.conversation_id == conv_id)).scalar_one()
        assert send.error_code == "21211"


# -- the 24-hour window, with a fake clock -----------------------------------------------------------

def test_free_form_is_sent_at_23h59m_after_the_last_inbound_message(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = FakeClock()
    conv_id, address = _open_conversation(factory, clock.now())
    clock.advance(hours=23, minutes=59, seconds=59)
    _queue(factory, conv_id, ["still inside the window"], clock.now())
    _deliver(_dispatcher(factory, twilio_url, clock), {conv_id})
    assert fake_twilio.bodies_to(address) == ["still inside the window"]


def test_at_24h_a_reply_without_a_template_is_held_and_the_owner_told(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = FakeClock()
    conv_id, address = _open_conversation(factory, clock.now())
    clock.advance(hours=24)
    [mid] = _queue(factory, conv_id, ["too late for free-form"], clock.now())
    _deliver(_dispatcher(factory, twilio_url, clock, templates={"handoff-reply": "HX" + "1" * 32}), {conv_id})
    assert fake_twilio.bodies_to(address) == []
    assert _rows(factory, conv_id) == [("held", "held", 0)]
    assert "whatsapp.send_held" in _actions(factory, mid)
    with factory() as s:
        msg = s.get(Message, mid)
        assert msg is not None and msg.error is not None and "24-hour" in msg.error


def test_outside_the_window_a_business_message_goes_as_its_approved_template(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = FakeClock()
    conv_id, address = _open_conversation(factory, clock.now())
    clock.advance(days=3)
    with unit_of_work(factory) as s:
        conv = s.get(Conversation, conv_id)
        assert conv is not None
        safety.record_consent(s, channel="whatsapp", address=address, hcp_id=None, purpose="service",
                              action="opt_in", source="form", message_id=None, now=clock.now())
        wa.queue_business_message(s, conv, purpose="handoff-reply", text="Your rep replied.",
                                  variables={"1": "Dr Test"}, now=clock.now())
    template = "HX" + "2" * 32
    _deliver(_dispatcher(factory, twilio_url, clock, templates={"handoff-reply": template}), {conv_id})
    [sent] = [m for m in fake_twilio.sent if m.to == address]
    assert (sent.body, sent.content_sid) == (None, template)
    assert json.loads(sent.content_variables or "{}") == {"1": "Dr Test"}
    assert _rows(factory, conv_id) == [("sent", "sent", 1)]


def test_a_business_message_without_a_recorded_opt_in_is_held(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = FakeClock()
    conv_id, address = _open_conversation(factory, clock.now())
    with unit_of_work(factory) as s:
        conv = s.get(Conversation, conv_id)
        assert conv is not None
        msg = wa.queue_business_message(s, conv, purpose="medical-inquiry-answered", text="Medical replied.",
                                        now=clock.now())
        mid = msg.id
    _deliver(_dispatcher(factory, twilio_url, clock), {conv_id})
    assert fake_twilio.bodies_to(address) == []
    assert _rows(factory, conv_id) == [("held", "held", 0)]
    with factory() as s:
        send = s.get(WhatsappSend, mid)
        assert send is not None and send.held_reason == "no recorded opt-in for medical messages"


# -- consent ---------------------------------------------------------------------------------------------

def test_messages_queued_before_a_stop_are_not_sent_only_its_confirmation_is(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = SystemClock()
    now = clock.now()
    conv_id, address = _open_conversation(factory, now)
    queued = _queue(factory, conv_id, [f"queued {i}" for i in range(5)], now)
    with unit_of_work(factory) as s:  # the webhook persists the STOP (and withdraws consent) ...
        stop = wa.record_inbound(s, wa.InboundForm(message_sid=f"SMstop{now.timestamp()}", from_=address,
                                                   body="STOP"), now=now, market="US")
    with unit_of_work(factory) as s:  # ... and the safety screen queues the one confirmation
        conv = s.get(Conversation, conv_id)
        assert conv is not None
        confirm = conversations.add_outbound(s, conv, text=safety.OPT_OUT_TEXT, now=now,
                                             in_reply_to=stop.message_id)
        later = conversations.add_outbound(s, conv, text="anything after the stop", now=now)
    _deliver(_dispatcher(factory, twilio_url, clock), {conv_id})
    assert fake_twilio.bodies_to(address) == [safety.OPT_OUT_TEXT]
    with factory() as s:
        statuses = {m: s.execute(select(OutboxItem.status).where(OutboxItem.message_id == m)).scalar_one()
                    for m in [*queued, confirm.id, later.id]}
    assert statuses == {**{m: "cancelled" for m in queued}, confirm.id: "sent", later.id: "cancelled"}
    assert "whatsapp.suppressed_opted_out" in _actions(factory, queued[0])


def test_a_repeated_stop_is_not_confirmed_again(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = SystemClock()
    now = clock.now()
    conv_id, address = _open_conversation(factory, now)
    for i in range(2):
        with unit_of_work(factory) as s:
            stop = wa.record_inbound(s, wa.InboundForm(message_sid=f"SMstop{i}{now.timestamp()}", from_=address,
                                                       body="stop"), now=now, market="US")
            conv = s.get(Conversation, conv_id)
            assert conv is not None
            conversations.add_outbound(s, conv, text=safety.OPT_OUT_TEXT, now=now, in_reply_to=stop.message_id)
    _deliver(_dispatcher(factory, twilio_url, clock), {conv_id})
    assert fake_twilio.bodies_to(address) == [safety.OPT_OUT_TEXT]


# -- shaping -----------------------------------------------------------------------------------------------

def test_a_long_reply_with_buttons_goes_out_as_ordered_parts_with_numbered_options(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = SystemClock()
    conv_id, address = _open_conversation(factory, clock.now())
    text = " ".join(f"Sentence {i} of the approved answer." for i in range(150))
    [mid] = _queue(factory, conv_id, [text], clock.now(),
                   buttons=[{"title": "Talk to a person", "payload": "/request_human"}])
    _deliver(_dispatcher(factory, twilio_url, clock), {conv_id})
    bodies = [b or "" for b in fake_twilio.bodies_to(address)]
    assert len(bodies) >= 3 and all(len(b) <= 1600 for b in bodies)
    assert bodies[-1].endswith("Reply 1 for Talk to a person")
    assert " ".join(bodies).startswith("Sentence 0 of the approved answer. Sentence 1")
    with factory() as s:
        parts = s.execute(select(WhatsappPart.part_index).where(WhatsappPart.message_id == mid)
                          .order_by(WhatsappPart.part_index)).scalars().all()
        send = s.get(WhatsappSend, mid)
        assert send is not None
        assert send.options == [{"n": 1, "title": "Talk to a person", "payload": "/request_human"}]
    assert list(parts) == list(range(len(bodies)))


# -- identity ------------------------------------------------------------------------------------------------

def test_a_number_maps_to_its_hcp_only_once_that_hcp_is_verified(factory: sessionmaker[Session]) -> None:
    from api.hcps.models import ChannelIdentity, Hcp

    now = SystemClock().now()
    pending_number, verified_number = new_number(), new_number()
    with unit_of_work(factory) as s:
        for number, status in ((pending_number, "pending"), (verified_number, "verified")):
            hcp = Hcp(name="Dr Test", verification_status=status, country="US", created_at=now)
            s.add(hcp)
            s.flush()
            s.add(ChannelIdentity(channel="whatsapp", address=number, hcp_id=hcp.id, created_at=now))
    with unit_of_work(factory) as s:
        pending = wa.conversation_for(s, pending_number, now=now, market="US")
        verified = wa.conversation_for(s, verified_number, now=now, market="US")
        assert pending.hcp_id is None
        assert verified.hcp_id is not None


def test_a_held_message_requeued_after_a_template_is_configured_goes_out(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:
    clock = FakeClock()
    conv_id, address = _open_conversation(factory, clock.now())
    clock.advance(days=2)
    with unit_of_work(factory) as s:
        conv = s.get(Conversation, conv_id)
        assert conv is not None
        safety.record_consent(s, channel="whatsapp", address=address, hcp_id=None, purpose="service",
                              action="opt_in", source="form", message_id=None, now=clock.now())
        mid = wa.queue_business_message(s, conv, purpose="request-update", text="Your samples shipped.",
                                        now=clock.now()).id
    _deliver(_dispatcher(factory, twilio_url, clock), {conv_id})
    assert _rows(factory, conv_id) == [("held", "held", 0)]
    with unit_of_work(factory) as s:
        wa.requeue(s, mid, now=clock.now(), actor_id="staff-1")
    _deliver(_dispatcher(factory, twilio_url, clock, templates={"request-update": "HX" + "3" * 32}), {conv_id})
    assert [m.content_sid for m in fake_twilio.sent if m.to == address] == ["HX" + "3" * 32]
    assert "outbox.requeued" in _actions(factory, mid)
