"""A medical answer to a WhatsApp HCP: a plain reply inside 24 hours, the approved template outside.

The console only queues the answer (with the template purpose when the window is closed); the
real outbox dispatcher then delivers it to the fake Twilio on loopback, applying the channel's
own rules (opt-in for medical messages, template per purpose, hold when neither fits).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.channels.whatsapp import service as wa
from api.channels.whatsapp.client import TwilioClient
from api.channels.whatsapp.models import WhatsappSend
from api.content import make_send_gate
from api.conversations.models import Message, OutboxItem
from api.db import unit_of_work
from api.outbox_worker import DispatchPolicy, OutboxDispatcher
from api.safety import service as safety
from api.safety.models import MedicalInquiry
from api.safety.screen import ScreenResult
from api.settings import Settings
from tests.conftest import LiveServer, free_port
from tests.consoles.conftest import StaffAccount
from tests.consoles.review_fixtures import ReviewWorld, review_world, unique
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, WHATSAPP_FROM, FakeTwilio

TEMPLATE = "HX" + "7" * 32
JSON = {"accept": "application/json"}


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> Iterator[ReviewWorld]:
    yield from review_world(engine, settings, make_staff)


@pytest.fixture(scope="module")
def twilio() -> Iterator[tuple[FakeTwilio, str]]:
    fake = FakeTwilio()
    server = LiveServer(fake.app(), free_port()).start()
    yield fake, server.url
    server.stop()


def whatsapp_inquiry(world: ReviewWorld, *, last_inbound_ago: timedelta,
                     medical_opt_in: bool = False) -> tuple[str, str, str]:
    """A WhatsApp HCP whose off-label question arrived ``last_inbound_ago``: (conversation, inquiry, number)."""
    address = f"whatsapp:+1555{random.randrange(10**7):07d}"
    asked_at = world.clock.now() - last_inbound_ago
    with unit_of_work(world.factory) as s:
        conv = wa.conversation_for(s, address, now=asked_at, market="US")
        conv.last_inbound_at = asked_at
        msg = Message(conversation_id=conv.id, direction="in", sender_type="hcp", channel="whatsapp",
                      channel_message_id=f"SM{uuid.uuid4().hex}", body=f"dose for a child? {unique()}",
                      status="processed", created_at=asked_at)
        s.add(msg)
        s.flush()
        outcome = safety.apply(s, conversation=conv, message=msg, now=asked_at,
                               result=ScreenResult(off_label=True, products=("cardiovex",),
                                                   off_label_reasons=("population",)))
        assert outcome.medical_inquiry_id is not None
        if medical_opt_in:
            safety.record_consent(s, channel="whatsapp", address=address, hcp_id=None, purpose="medical",
                                  action="opt_in", source="form", message_id=None, now=asked_at)
        return conv.id, outcome.medical_inquiry_id, address


def _answer(world: ReviewWorld, inquiry_id: str, text: str) -> dict[str, Any]:
    client, _acc, csrf = world.staff_client("medical_reviewer")
    res = client.post(f"/api/staff/medical/inquiries/{inquiry_id}/answer", json={"text": text},
                      headers={**JSON, "x-csrf-token": csrf})
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return body


def _dispatch(world: ReviewWorld, url: str, conversation_id: str, templates: dict[str, str]) -> None:
    client = TwilioClient(api_url=url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, timeout=5.0)
    dispatcher = OutboxDispatcher(
        world.factory, client, world.clock, make_send_gate("US"), from_number=WHATSAPP_FROM, templates=templates,
        status_callback_url="https://concierge.example.com/webhooks/twilio/status",
        policy=DispatchPolicy(max_attempts=3, retry_base=0.01, retry_max=0.05, lease=30, poll_interval=0.05),
    )

    async def run() -> None:
        try:
            await dispatcher.drain(timeout=30, conversation_ids={conversation_id})
        finally:
            await dispatcher.close()

    asyncio.run(run())


def _outbox(world: ReviewWorld, message_id: int) -> tuple[str, str, str | None]:
    with world.factory() as s:
        item = s.execute(select(OutboxItem).where(OutboxItem.message_id == message_id)).scalar_one()
        msg = s.get(Message, message_id)
        send = s.get(WhatsappSend, message_id)
        assert msg is not None
        return item.status, msg.status, send.held_reason if send else None


def test_inside_24_hours_the_answer_goes_as_a_free_form_reply(world: ReviewWorld,
                                                               twilio: tuple[FakeTwilio, str]) -> None:
    fake, url = twilio
    conversation_id, inquiry_id, address = whatsapp_inquiry(world, last_inbound_ago=timedelta(hours=2))
    answer = _answer(world, inquiry_id, "Inside the window: no paediatric data.")
    assert answer["whatsapp_template"] is None
    with world.factory() as s:
        assert s.get(WhatsappSend, answer["message_id"]) is None  # a reply, not a business-initiated message
    _dispatch(world, url, conversation_id, {"medical-inquiry-answered": TEMPLATE})
    [sent] = [m for m in fake.sent if m.to == address]
    with world.factory() as s:
        reference = s.get(MedicalInquiry, inquiry_id).reference  # type: ignore[union-attr]
    # the answer says who speaks: Medical Information, with the inquiry's reference
    assert (sent.body, sent.content_sid) == (f"*Medical Information · {reference}*\n"
                                             "Inside the window: no paediatric data.", None)
    assert _outbox(world, answer["message_id"])[:2] == ("sent", "sent")


def test_outside_24_hours_the_answer_goes_as_the_medical_inquiry_answered_template(
        world: ReviewWorld, twilio: tuple[FakeTwilio, str]) -> None:
    fake, url = twilio
    conversation_id, inquiry_id, address = whatsapp_inquiry(world, last_inbound_ago=timedelta(days=3),
                                                            medical_opt_in=True)
    answer = _answer(world, inquiry_id, "Outside the window.")
    assert answer["whatsapp_template"] == "medical-inquiry-answered"
    reference = world.inquiry(inquiry_id).reference
    with world.factory() as s:
        send = s.get(WhatsappSend, answer["message_id"])
        assert send is not None and send.purpose == "medical-inquiry-answered"
        assert send.content_variables == {"1": reference}
    _dispatch(world, url, conversation_id, {"medical-inquiry-answered": TEMPLATE})
    [sent] = [m for m in fake.sent if m.to == address]
    assert (sent.body, sent.content_sid) == (None, TEMPLATE)
    assert json.loads(sent.content_variables or "{}") == {"1": reference}
    assert _outbox(world, answer["message_id"])[:2] == ("sent", "sent")


@pytest.mark.parametrize(("opt_in", "templates", "reason"), [
    (True, {}, "outside WhatsApp's 24-hour window and no approved template for medical-inquiry-answered"),
    (False, {"medical-inquiry-answered": TEMPLATE}, "no recorded opt-in for medical messages"),
])
def test_outside_24_hours_without_template_or_medical_opt_in_the_answer_is_held_not_sent(
        world: ReviewWorld, twilio: tuple[FakeTwilio, str], opt_in: bool, templates: dict[str, str],
        reason: str) -> None:
    fake, url = twilio
    conversation_id, inquiry_id, address = whatsapp_inquiry(world, last_inbound_ago=timedelta(days=2),
                                                            medical_opt_in=opt_in)
    answer = _answer(world, inquiry_id, "Held answer.")
    _dispatch(world, url, conversation_id, templates)
    assert [m for m in fake.sent if m.to == address] == []
    assert _outbox(world, answer["message_id"]) == ("held", "held", reason)
    # The inquiry still records the answer and who gave it; the hold is visible on the page.
    reviewer: TestClient
    reviewer, _acc, _csrf = world.staff_client("medical_reviewer")
    page = reviewer.get(f"/console/medical/{inquiry_id}")
    assert "Held answer." in page.text and "held" in page.text
    assert world.inquiry(inquiry_id).status == "answered"
