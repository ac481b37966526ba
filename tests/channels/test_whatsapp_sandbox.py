"""The WhatsApp sandbox (``concierge run --whatsapp-sandbox``): the phone's messages reach the real
webhook signed like Twilio, replies come back through the outbox and the fake Twilio, status
callbacks update the stored message — and the sandbox's own API refuses what it should."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.channels.whatsapp.models import WhatsappThread
from api.channels.whatsapp.sandbox import PhoneSandbox, loopback_url
from api.conversations.models import Message, OutboxItem
from api.hcps import intake
from api.pipeline.turn import null_safety_hook
from api.settings import Settings
from tests.conftest import LiveServer, free_port
from tests.fakes.rasa import FakeRasa

PUBLIC_URL = "https://concierge.example.com"


def _number() -> str:
    return f"whatsapp:+1555{random.randrange(10**7):07d}"


@pytest.fixture()
def sandbox_stack(engine: Engine, settings: Settings, factory: sessionmaker[Session]) -> Iterator[
        tuple[PhoneSandbox, FakeRasa]]:
    """The sandbox on loopback and the real app configured for it, as ``concierge run`` wires them."""
    # The app's dispatcher would deliver every pending WhatsApp row of the shared test database.
    with factory.begin() as s:
        s.execute(update(OutboxItem).where(OutboxItem.channel == "whatsapp", OutboxItem.status == "pending")
                  .values(status="cancelled"))
    port = free_port()
    sandbox = PhoneSandbox(webhook_base=loopback_url("0.0.0.0", port), public_url=PUBLIC_URL)
    sandbox.start()
    rasa = FakeRasa()
    app_settings = sandbox.configure(settings.model_copy(update={"public_url": PUBLIC_URL}))
    app = create_app(app_settings, engine=engine, safety_hook=null_safety_hook,
                     rasa_transport=rasa.transport(), warm_knowledge=False)
    server = LiveServer(app, port).start()
    try:
        yield sandbox, rasa
    finally:
        server.stop()
        sandbox.stop()


def _phone(sandbox: PhoneSandbox, number: str, body: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{sandbox.url}/sandbox/api/messages", json={"from": number, "body": body, **extra},
                      timeout=20)


def _wait_for(predicate: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _business_bodies(sandbox: PhoneSandbox, number: str) -> list[str]:
    events = httpx.get(f"{sandbox.url}/sandbox/api/messages", params={"number": number}, timeout=10).json()
    return [e["body"] for e in events["events"] if e["direction"] == "business"]


def test_configure_points_every_twilio_setting_at_the_sandbox(settings: Settings) -> None:
    sandbox = PhoneSandbox(webhook_base="http://127.0.0.1:8000", public_url=PUBLIC_URL)
    with pytest.raises(RuntimeError):
        sandbox.configure(settings)
    sandbox.start()
    try:
        configured = sandbox.configure(settings.model_copy(update={"twilio_auth_token": "a-real-token"}))
    finally:
        sandbox.stop()
    assert configured.twilio_api_url == sandbox.url and sandbox.url.startswith("http://127.0.0.1:")
    assert configured.twilio_auth_token == sandbox.fake.auth_token != "a-real-token"
    assert configured.twilio_account_sid == sandbox.fake.account_sid
    assert configured.twilio_whatsapp_from.startswith("whatsapp:+")
    # a fresh token every run: a sandbox left running cannot sign for another one
    assert PhoneSandbox(webhook_base="http://x", public_url=PUBLIC_URL).fake.auth_token != sandbox.fake.auth_token


def test_phone_message_is_answered_through_the_outbox_and_its_delivery_reported(
        sandbox_stack: tuple[PhoneSandbox, FakeRasa], factory: sessionmaker[Session]) -> None:
    sandbox, rasa = sandbox_stack
    number = _number()
    r = _phone(sandbox, number, "hello from the sandbox")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted" and r.json()["ack_ms"] > 0
    _wait_for(lambda: len(_business_bodies(sandbox, number)) >= 2)
    bodies = _business_bodies(sandbox, number)
    # one menu per turn: the answer's "Talk to a person" moves to the last bubble (a typed 1 means one thing)
    assert bodies[0] == "echo: hello from the sandbox"
    assert bodies[1].endswith("Reply 1 for Talk to a person")
    # a first-time number: the verification intake follows the answer (api/hcps/intake.py)
    assert bodies[1].startswith(intake.INTRO) and len(bodies) == 2
    assert rasa.calls[-1]["message"] == "hello from the sandbox"
    # the fake reports sent → delivered to the api's status callback, signed; the api records it
    with factory() as s:
        conv_id = s.get(WhatsappThread, number)
        assert conv_id is not None

    def outbound_status() -> str | None:
        with factory() as s:
            msg = s.execute(select(Message).where(Message.conversation_id == conv_id.conversation_id,
                                                  Message.direction == "out").order_by(Message.id)).scalars().first()
            assert msg is not None
            return msg.status if msg.status in ("delivered", "read") else None

    assert _wait_for(outbound_status) in ("delivered", "read")
    # "1" picks the numbered option: Rasa gets the button's payload
    assert _phone(sandbox, number, "1").json()["status"] == "accepted"
    _wait_for(lambda: len(_business_bodies(sandbox, number)) >= 3)
    assert _business_bodies(sandbox, number)[2] == "A colleague will join."
    assert rasa.calls[-1]["message"] == "/request_human"


def test_forged_phone_message_is_refused_and_nothing_stored(
        sandbox_stack: tuple[PhoneSandbox, FakeRasa], factory: sessionmaker[Session]) -> None:
    sandbox, rasa = sandbox_stack
    number = _number()
    event = _phone(sandbox, number, "forged hello", forge=True).json()
    assert event["status"] == "rejected" and event["detail"].startswith("403")
    with factory() as s:
        assert s.get(WhatsappThread, number) is None
        assert s.execute(select(Message).where(Message.channel_message_id == event["sid"])).first() is None
    assert all(c["message"] != "forged hello" for c in rasa.calls)


def test_location_and_photo_are_stored_as_references_and_answered(
        sandbox_stack: tuple[PhoneSandbox, FakeRasa]) -> None:
    sandbox, _ = sandbox_stack
    number = _number()
    assert _phone(sandbox, number, "", kind="location").json()["status"] == "accepted"
    assert _phone(sandbox, number, "", kind="photo").json()["status"] == "accepted"
    bodies = _wait_for(lambda: (b := _business_bodies(sandbox, number)) and len(b) == 2 and b)
    assert bodies[0].startswith("Thank you for sharing a location.")
    assert bodies[1].startswith("Thank you — I have received your image.")


@pytest.mark.parametrize(("kwargs", "status", "message"), [
    ({"json": {"from": "+15551234567", "body": "hi"}}, 422, "WhatsApp number"),
    ({"json": {"from": "whatsapp:+15551234567", "body": "   "}}, 422, "type a message"),
    ({"json": {"from": "whatsapp:+15551234567", "body": "a\x00b"}}, 422, "NUL"),
    ({"json": {"from": "whatsapp:+15551234567", "body": "x" * 4097}}, 422, "body"),
    ({"json": {"from": "whatsapp:+15551234567", "body": "hi", "kind": "sticker"}}, 422, "kind"),
    ({"json": {"from": "whatsapp:+15551234567", "body": "hi", "admin": True}}, 422, "admin"),
    ({"json": ["not", "an", "object"]}, 422, ""),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, ""),
    # another web page can post forms or text/plain without a CORS pre-flight: refused
    ({"data": {"from": "whatsapp:+15551234567", "body": "hi"}}, 415, "JSON"),
    ({"content": b'{"from": "whatsapp:+15551234567", "body": "hi"}', "headers": {"content-type": "text/plain"}},
     415, "JSON"),
])
def test_sandbox_api_refuses_bad_input_without_calling_the_api(kwargs: dict[str, Any], status: int,
                                                                message: str) -> None:
    sandbox = PhoneSandbox(webhook_base="http://127.0.0.1:9", public_url=PUBLIC_URL)  # nothing listens there
    sandbox.start()
    try:
        r = httpx.post(f"{sandbox.url}/sandbox/api/messages", timeout=10, **kwargs)
        assert r.status_code == status, r.text
        assert message in r.json()["error"]["message"]
        assert sandbox.events("whatsapp:+15551234567") == []
        # and reading needs a valid number
        assert httpx.get(f"{sandbox.url}/sandbox/api/messages", params={"number": "<script>"}).status_code == 422
        assert httpx.get(f"{sandbox.url}/sandbox/static/index.html").status_code == 404
    finally:
        sandbox.stop()


def test_unreachable_api_is_reported_on_the_phone_not_hidden() -> None:
    sandbox = PhoneSandbox(webhook_base=loopback_url("127.0.0.1", free_port()), public_url=PUBLIC_URL)
    sandbox.start()
    try:
        event = _phone(sandbox, "whatsapp:+15551234567", "anyone there?").json()
    finally:
        sandbox.stop()
    assert event["status"] == "rejected" and "did not answer" in event["detail"]
