"""Fatigue guard: frequency cap and quiet hours on business-initiated WhatsApp messages, through the
real outbox dispatcher and the fake Twilio, on a fake clock. Replies are never held."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.audit.models import AuditEvent
from api.channels.whatsapp import service as wa
from api.channels.whatsapp.client import TwilioClient
from api.clock import FakeClock
from api.content import make_send_gate
from api.conversations import service as conversations
from api.conversations.models import Conversation, OutboxItem
from api.db import unit_of_work
from api.errors import InvalidInput
from api.outbox_worker import DispatchPolicy, OutboxDispatcher
from api.safety import service as safety
from feedback import fatigue
from feedback import service as feedback
from tests.channels.conftest import PUBLIC_URL, factory, fake_twilio, new_number, twilio_server, twilio_url  # noqa: F401
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, WHATSAPP_FROM, FakeTwilio

TEMPLATES = {"request-update": "HX" + "3" * 32, "medical-inquiry-answered": "HX" + "4" * 32}
POLICY = fatigue.FatiguePolicy(max_messages=3, window_days=7, quiet_hours="21:00-08:00")
LONDON_MORNING = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 10:00 in London (GMT)


def _deliver(factory: sessionmaker[Session], url: str, clock: FakeClock, conv_id: str) -> None:  # noqa: F811
    client = TwilioClient(api_url=url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, timeout=2.0)
    dispatcher = OutboxDispatcher(factory, client, clock, make_send_gate("GB"), from_number=WHATSAPP_FROM,
                                  templates=TEMPLATES, status_callback_url=PUBLIC_URL + "/webhooks/twilio/status",
                                  policy=DispatchPolicy(retry_base=0.01, retry_max=0.05, poll_interval=0.05),
                                  fatigue_policy=POLICY)

    async def run() -> None:
        try:
            await dispatcher.run_once()  # one poll round: what is due (deferred rows included) goes
            await dispatcher.drain(timeout=30, conversation_ids={conv_id})
        finally:
            await dispatcher.close()

    asyncio.run(run())


def _conversation(factory: sessionmaker[Session], now: datetime, *, frequency: str | None = None,  # noqa: F811
                  ) -> tuple[str, str]:
    address = new_number()
    with unit_of_work(factory) as s:
        conv = wa.conversation_for(s, address, now=now, market="GB")
        conv.last_inbound_at = now - timedelta(days=2)  # the 24-hour window is closed
        for purpose in ("service", "medical"):
            safety.record_consent(s, channel="whatsapp", address=address, hcp_id=None, purpose=purpose,
                                  action="opt_in", source="form", message_id=None, now=now)
        if frequency:
            feedback.set_preference(s, conv, name="frequency", value=frequency, message_id=None, now=now)
        return conv.id, address


def _business(factory: sessionmaker[Session], conv_id: str, now: datetime, text: str,  # noqa: F811
              purpose: str = "request-update") -> int:
    with unit_of_work(factory) as s:
        conv = s.get_one(Conversation, conv_id)
        return wa.queue_business_message(s, conv, purpose=purpose, text=text, variables={"1": "R-1"}, now=now).id


def _status(factory: sessionmaker[Session], message_id: int) -> tuple[str, datetime | None]:  # noqa: F811
    with factory() as s:
        row = s.execute(select(OutboxItem).where(OutboxItem.message_id == message_id)).scalar_one()
        return row.status, row.next_attempt_at


def _audit(factory: sessionmaker[Session], message_id: int) -> list[AuditEvent]:  # noqa: F811
    with factory() as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.subject_type == "message",
                                                       AuditEvent.subject_id == str(message_id))
                              .order_by(AuditEvent.seq)).scalars())


def test_the_hcps_weekly_frequency_defers_a_second_message_until_the_week_is_over(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:  # noqa: F811
    clock = FakeClock(LONDON_MORNING)
    conv_id, address = _conversation(factory, clock.now(), frequency="weekly")
    first = _business(factory, conv_id, clock.now(), "Your samples shipped.")
    _deliver(factory, twilio_url, clock, conv_id)
    assert _status(factory, first)[0] == "sent"
    sent_at = clock.now()
    clock.advance(days=2)
    second = _business(factory, conv_id, clock.now(), "Your literature is ready.")
    _deliver(factory, twilio_url, clock, conv_id)
    assert _status(factory, second) == ("deferred", sent_at + timedelta(days=7))
    [deferred] = [e for e in _audit(factory, second) if e.action == "outbox.deferred"]
    assert deferred.data["rule"] == "frequency_cap" and "weekly" in deferred.data["reason"]
    assert len(fake_twilio.bodies_to(address)) == 1

    clock.set(sent_at + timedelta(days=7, minutes=1))
    _deliver(factory, twilio_url, clock, conv_id)
    assert _status(factory, second)[0] == "sent"
    assert len(fake_twilio.bodies_to(address)) == 2
    actions = [e.action for e in _audit(factory, second)]
    assert actions.index("outbox.deferred") < actions.index("outbox.released") < actions.index("message.sent")


def test_the_company_default_caps_an_hcp_who_stated_nothing(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:  # noqa: F811
    clock = FakeClock(LONDON_MORNING)
    conv_id, _address = _conversation(factory, clock.now())
    ids = []
    for i in range(4):
        ids.append(_business(factory, conv_id, clock.now(), f"Update {i}."))
        _deliver(factory, twilio_url, clock, conv_id)
        clock.advance(hours=1)
    assert [_status(factory, m)[0] for m in ids] == ["sent", "sent", "sent", "deferred"]
    assert _status(factory, ids[3])[1] == LONDON_MORNING + timedelta(days=7)


def test_a_reply_to_the_hcp_is_never_held_behind_a_deferred_message(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:  # noqa: F811
    clock = FakeClock(datetime(2026, 11, 23, 22, 30, tzinfo=UTC))  # 22:30 in London: quiet hours
    conv_id, address = _conversation(factory, clock.now())
    business = _business(factory, conv_id, clock.now(), "Your request was updated.")
    with unit_of_work(factory) as s:
        conv = s.get_one(Conversation, conv_id)
        inbound = conversations.persist_inbound(s, conv, text="are you there?", now=clock.now()).message
        reply = conversations.add_outbound(s, conv, text="Yes, how can I help?", now=clock.now(),
                                           in_reply_to=inbound.id).id
    _deliver(factory, twilio_url, clock, conv_id)
    assert _status(factory, reply)[0] == "sent"
    assert _status(factory, business) == ("deferred", datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    assert fake_twilio.bodies_to(address) == ["Yes, how can I help?"]


def test_quiet_hours_hold_a_medical_answer_that_the_frequency_cap_lets_through(
        factory: sessionmaker[Session], fake_twilio: FakeTwilio, twilio_url: str) -> None:  # noqa: F811
    clock = FakeClock(LONDON_MORNING)
    conv_id, _address = _conversation(factory, clock.now(), frequency="monthly")
    _business(factory, conv_id, clock.now(), "Your samples shipped.")
    _deliver(factory, twilio_url, clock, conv_id)
    clock.set(datetime(2026, 11, 25, 6, 0, tzinfo=UTC))  # 06:00 London, two days later
    answer = _business(factory, conv_id, clock.now(), "Medical replied.", purpose="medical-inquiry-answered")
    _deliver(factory, twilio_url, clock, conv_id)
    assert _status(factory, answer) == ("deferred", datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    clock.set(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    _deliver(factory, twilio_url, clock, conv_id)
    assert _status(factory, answer)[0] == "sent"  # exempt from the monthly cap, not from quiet hours


@pytest.mark.parametrize(("market", "now", "until"), [
    ("GB", datetime(2026, 7, 1, 20, 30, tzinfo=UTC), datetime(2026, 7, 2, 7, 0, tzinfo=UTC)),  # BST
    ("GB", datetime(2026, 1, 5, 7, 59, tzinfo=UTC), datetime(2026, 1, 5, 8, 0, tzinfo=UTC)),
    ("GB", datetime(2026, 1, 5, 12, 0, tzinfo=UTC), None),
    ("US", datetime(2026, 1, 5, 12, 0, tzinfo=UTC), datetime(2026, 1, 5, 13, 0, tzinfo=UTC)),  # 07:00 New York
    ("JP", datetime(2026, 1, 5, 12, 30, tzinfo=UTC), datetime(2026, 1, 5, 23, 0, tzinfo=UTC)),  # 21:30 Tokyo
])
def test_quiet_hours_are_in_the_hcps_local_time(market: str, now: datetime, until: datetime | None) -> None:
    assert fatigue.quiet_until(POLICY, market, now) == until


def test_unknown_markets_use_the_default_time_zone_and_quiet_hours_can_be_off() -> None:
    policy = fatigue.FatiguePolicy(default_timezone="Europe/Berlin")
    assert fatigue.quiet_until(policy, "ZZ", datetime(2026, 1, 5, 20, 30, tzinfo=UTC)) == \
        datetime(2026, 1, 6, 7, 0, tzinfo=UTC)
    assert fatigue.quiet_until(fatigue.FatiguePolicy(quiet_hours="off"), "GB",
                               datetime(2026, 1, 5, 23, 0, tzinfo=UTC)) is None


@pytest.mark.parametrize("bad", ["21-08", "25:00-08:00", "08:00-08:00", "evening"])
def test_bad_quiet_hours_are_refused_clearly(bad: str) -> None:
    with pytest.raises(InvalidInput, match="quiet hours"):
        fatigue.parse_quiet_hours(bad)


def test_stated_frequencies_map_to_caps() -> None:
    assert POLICY.cap_for("monthly") == fatigue.Cap(1, timedelta(days=30))
    assert POLICY.cap_for("less_often") == fatigue.Cap(1, timedelta(days=7))
    assert POLICY.cap_for(None) == POLICY.cap_for("whatever") == fatigue.Cap(3, timedelta(days=7))
