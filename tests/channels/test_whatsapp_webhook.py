"""Twilio webhooks: signature checked on the public URL, nothing stored unless valid, fast ack."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.channels.whatsapp import ingest
from api.channels.whatsapp.models import (
    WhatsappInbound,
    WhatsappMedia,
    WhatsappPart,
    WhatsappSend,
    WhatsappThread,
)
from api.channels.whatsapp.router import EMPTY_TWIML
from api.conversations.models import Conversation, InboxItem, InboxStatus, Message, MessageStatus, OutboxItem
from api.db import unit_of_work
from api.safety import service as safety
from api.safety.models import Consent
from tests.channels.conftest import PUBLIC_URL, ingested, new_number
from tests.fakes.rasa import FakeRasa
from tests.fakes.twilio import TwilioSigner

INBOUND = "/webhooks/twilio/whatsapp"
STATUS = "/webhooks/twilio/status"


def _counts(engine: Engine) -> tuple[int, ...]:
    with Session(engine) as s, Session(ingest.intake_engine(engine)) as intake:
        return (*(int(s.execute(select(func.count()).select_from(t)).scalar_one())
                  for t in (Message, Conversation, InboxItem, WhatsappThread, Consent, WhatsappMedia)),
                int(intake.execute(select(func.count()).select_from(WhatsappInbound)).scalar_one()))


def _inbound_count(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.execute(select(func.count()).select_from(Message).where(Message.direction == "in")).scalar_one())


def _without_turns(client: TestClient) -> None:
    """Persist and ack only: the worker is not kicked (signature tests do not wait for replies)."""
    client.app.state.concierge.worker.kick = lambda conversation_id: None  # type: ignore[attr-defined]


def _forget_turns(engine: Engine) -> None:
    """Close the inbox rows a test left unprocessed, so later apps do not replay them."""
    from sqlalchemy import update

    with Session(engine) as s, s.begin():
        s.execute(update(InboxItem).where(InboxItem.status == InboxStatus.pending).values(status="done"))


def _post(client: TestClient, req: object) -> int:
    """Post a webhook; once acknowledged, wait until the ingester has stored it as a message."""
    from tests.fakes.twilio import SignedRequest

    assert isinstance(req, SignedRequest)
    status = client.post(req.path_and_query, content=req.body, headers=req.headers).status_code
    if status == 200 and req.path_and_query.startswith(INBOUND):
        ingested(client)
    return status


def _conv(factory: sessionmaker[Session], address: str) -> Conversation:
    with factory() as s:
        thread = s.get(WhatsappThread, address)
        assert thread is not None
        conv = s.get(Conversation, thread.conversation_id)
        assert conv is not None
        return conv


def test_a_signed_message_is_acknowledged_with_empty_twiml_and_stored_once(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    client = make_wa_client()
    number = new_number()
    req = signer.request(INBOUND, signer.inbound(number, "Hello there"))
    r = client.post(req.path_and_query, content=req.body, headers=req.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    assert r.text == EMPTY_TWIML
    assert _post(client, req) == 200  # Twilio's retry of the same MessageSid
    conv = _conv(factory, number)
    with factory() as s:
        bodies = s.execute(select(Message.body).where(Message.conversation_id == conv.id,
                                                      Message.direction == "in")).scalars().all()
    assert bodies == ["Hello there"]
    assert conv.channel == "whatsapp" and conv.address == number and conv.last_inbound_at is not None


def test_1000_forged_requests_are_all_rejected_and_write_nothing(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, engine: Engine) -> None:
    client = make_wa_client()
    rng = random.Random(1)
    wrong_token = TwilioSigner(PUBLIC_URL, auth_token="not-our-token")
    before = _counts(engine)
    statuses: dict[str, list[int]] = {}
    for i in range(1000):
        params = signer.inbound(new_number(), f"forged {i} ✓")
        kind = ("wrong signature", "wrong url", "changed body", "missing header", "wrong token",
                "other path", "changed query", "http scheme")[i % 8]
        if kind == "wrong signature":
            req = signer.request(INBOUND, params, signature=base64.b64encode(rng.randbytes(20)).decode())
        elif kind == "wrong url":
            req = signer.request(INBOUND, params, signed_base="https://attacker.example.net")
        elif kind == "changed body":
            req = signer.request(INBOUND, params)
            req.body = req.body.replace(b"forged", b"FORGED")
        elif kind == "missing header":
            req = signer.request(INBOUND, params, signature="")
        elif kind == "wrong token":
            req = wrong_token.request(INBOUND, params)
        elif kind == "other path":
            good = signer.request("/webhooks/twilio/status", params)
            req = signer.request(INBOUND, params, signature=good.headers["x-twilio-signature"])
        elif kind == "changed query":
            req = signer.request(INBOUND, params, query="a=1")
            req.path_and_query = INBOUND + "?a=2"
        else:
            req = signer.request(INBOUND, params, signed_base=PUBLIC_URL.replace("https", "http"))
        statuses.setdefault(kind, []).append(_post(client, req))
    assert {k: set(v) for k, v in statuses.items()} == {k: {403} for k in statuses}
    assert sum(len(v) for v in statuses.values()) == 1000
    assert _counts(engine) == before


def test_1000_valid_requests_with_legitimate_variations_are_all_accepted(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, engine: Engine) -> None:
    client = make_wa_client(FakeRasa())
    _without_turns(client)  # this test is about acceptance; replies are not awaited
    numbers = [new_number() for _ in range(20)]
    texts = ["Hello", "Dosis für Kinder? äöü ß", "用量是多少？", "مرحبا، سؤال عن الجرعة", "🙂👩‍⚕️💊",
             "a&b=c%20d+e", "line one\nline two", "quote \" and ' and <tag>", "  spaced  "]
    before = _inbound_count(engine)
    accepted = 0
    for i in range(1000):
        params = signer.inbound(numbers[i % 20], texts[i % len(texts)] + f" #{i}")
        variant = i % 4
        if variant == 0:
            req = signer.request(INBOUND, params)
        elif variant == 1:  # Twilio signed the URL with the explicit default port
            req = signer.request(INBOUND, params, signed_base=PUBLIC_URL + ":443")
        elif variant == 2:  # the webhook URL configured at Twilio carries a query string
            req = signer.request(INBOUND, params, query=f"tenant=eu&n={i}&x=%C3%A9")
        else:  # extra fields Twilio adds over time are signed too
            params.update({"ReferralNumMedia": "0", "MessagingServiceSid": "MG" + "1" * 32,
                           "ProfileName": "Dr Zoë Ångström"})
            req = signer.request(INBOUND, params)
        code = client.post(req.path_and_query, content=req.body, headers=req.headers).status_code
        assert code == 200, (variant, params)
        accepted += 1
    assert accepted == 1000
    ingested(client, timeout=300)  # 1,000 ingests on a shared, busy box
    assert _inbound_count(engine) == before + 1000
    _forget_turns(engine)


def test_a_public_url_with_a_port_accepts_signatures_with_or_without_it(
        make_wa_client: Callable[..., TestClient]) -> None:
    """Twilio signs inconsistently with and without the port; its validator accepts both."""
    client = make_wa_client(public_url="https://concierge.example.com:8443")
    for base in ("https://concierge.example.com:8443", "https://concierge.example.com"):
        signer = TwilioSigner(base)
        assert _post(client, signer.request(INBOUND, signer.inbound(new_number(), "hi"))) == 200
    other_host = TwilioSigner("https://proxy.internal:8443")
    assert _post(client, other_host.request(INBOUND, other_host.inbound(new_number(), "hi"))) == 403


def test_malformed_bodies_get_a_4xx_and_store_nothing(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, engine: Engine) -> None:
    client = make_wa_client()
    before = _counts(engine)
    number = new_number()
    missing_from = {k: v for k, v in signer.inbound(number, "hi").items() if k != "From"}
    missing_sid = {k: v for k, v in signer.inbound(number, "hi").items()
                   if k not in ("MessageSid", "SmsMessageSid")}
    cases = [
        signer.request(INBOUND, missing_from),
        signer.request(INBOUND, missing_sid),
        signer.request(INBOUND, signer.inbound("+15551234567", "not a whatsapp address")),
        signer.request(INBOUND, signer.inbound(number, "")),  # no text, no media
        signer.request(INBOUND, signer.inbound(number, "nul \x00 byte")),
        signer.request(INBOUND, signer.inbound(number, "x", NumMedia="many")),
        signer.request(INBOUND, signer.inbound(number, "y" * 70_000)),  # oversized
    ]
    bad_utf8 = signer.request(INBOUND, signer.inbound(number, "hi"))
    bad_utf8.body = bad_utf8.body + b"&Extra=%FF%FE"
    cases.append(bad_utf8)
    as_json = signer.request(INBOUND, signer.inbound(number, "hi"))
    as_json.headers["content-type"] = "application/json"
    cases.append(as_json)
    for req in cases:
        r = client.post(req.path_and_query, content=req.body, headers=req.headers)
        assert 400 <= r.status_code < 500, (req.body[:80], r.status_code)
        assert "error" in r.json()
    assert _counts(engine) == before


def test_a_wordless_image_is_stored_as_a_reference_and_the_bot_says_what_it_can_do(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    client = make_wa_client()
    number = new_number()
    params = signer.inbound(number, "", NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME1",
                            MediaContentType0="image/jpeg")
    assert _post(client, signer.request(INBOUND, params)) == 200
    conv = _conv(factory, number)
    with factory() as s:
        inbound = s.execute(select(Message).where(Message.conversation_id == conv.id,
                                                  Message.direction == "in")).scalar_one()
        media = s.execute(select(WhatsappMedia).where(WhatsappMedia.message_id == inbound.id)).scalar_one()
        reply = s.execute(select(Message).where(Message.in_reply_to == inbound.id)).scalar_one()
        inbox = s.execute(select(InboxItem).where(InboxItem.message_id == inbound.id)).scalar_one()
    assert inbound.body == "[attachment: image/jpeg]"
    assert (media.kind, media.url, media.content_type) == ("media", "https://api.twilio.com/media/ME1",
                                                           "image/jpeg")
    assert "image" in reply.body and "can't open or review" in reply.body
    assert reply.status == MessageStatus.queued  # the dispatcher sends it
    assert inbox.status == InboxStatus.done


def test_a_captioned_pdf_goes_to_the_bot_and_the_reference_is_kept(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    rasa = FakeRasa()
    client = make_wa_client(rasa)
    number = new_number()
    params = signer.inbound(number, "see this study", NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME2",
                            MediaContentType0="application/pdf")
    assert _post(client, signer.request(INBOUND, params)) == 200
    conv = _conv(factory, number)
    with factory() as s:
        inbound = s.execute(select(Message).where(Message.conversation_id == conv.id,
                                                  Message.direction == "in")).scalar_one()
        assert s.execute(select(WhatsappMedia.content_type)
                         .where(WhatsappMedia.message_id == inbound.id)).scalar_one() == "application/pdf"
        first_reply = s.execute(select(Message.body).where(Message.in_reply_to == inbound.id)
                                .order_by(Message.id)).scalars().first()
    assert inbound.body == "see this study"
    assert first_reply is not None and "document" in first_reply


def test_location_and_contact_cards_are_handled_gracefully(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    client = make_wa_client()
    loc_number, card_number = new_number(), new_number()
    loc = signer.inbound(loc_number, "", Latitude="51.5072", Longitude="-0.1276", Label="Clinic")
    card = signer.inbound(card_number, "", NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME3",
                          MediaContentType0="text/vcard")
    assert _post(client, signer.request(INBOUND, loc)) == 200
    assert _post(client, signer.request(INBOUND, card)) == 200
    for number, kind, words in ((loc_number, "location", "location"), (card_number, "contact", "contact")):
        conv = _conv(factory, number)
        with factory() as s:
            msg = s.execute(select(Message).where(Message.conversation_id == conv.id,
                                                  Message.direction == "in")).scalar_one()
            assert s.execute(select(WhatsappMedia.kind).where(WhatsappMedia.message_id == msg.id)).scalar_one() == kind
            reply = s.execute(select(Message.body).where(Message.in_reply_to == msg.id)).scalar_one()
            assert words in reply


def test_twilio_opt_out_type_stop_withdraws_consent_before_the_ack(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    client = make_wa_client()
    number = new_number()
    assert _post(client, signer.request(INBOUND, signer.inbound(number, "hello"))) == 200
    conv = _conv(factory, number)
    with factory() as s:
        assert not safety.is_conversation_opted_out(s, conv)
    assert _post(client, signer.request(INBOUND, signer.inbound(number, "Stop", OptOutType="STOP"))) == 200
    with factory() as s:
        assert safety.is_conversation_opted_out(s, conv, "service")
        assert safety.is_conversation_opted_out(s, conv, "marketing")
    assert _post(client, signer.request(INBOUND, signer.inbound(number, "start", OptOutType="START"))) == 200
    with factory() as s:
        assert not safety.is_conversation_opted_out(s, conv, "service")


def test_replying_with_a_number_sends_that_options_payload_to_the_bot(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    rasa = FakeRasa()
    client = make_wa_client(rasa)
    number = new_number()
    assert _post(client, signer.request(INBOUND, signer.inbound(number, "hello"))) == 200
    conv = _conv(factory, number)
    with unit_of_work(factory) as s:  # as the dispatcher leaves it after sending numbered options
        out = s.execute(select(Message).where(Message.conversation_id == conv.id, Message.direction == "out")
                        .order_by(Message.id.desc())).scalars().first()
        if out is None:
            from api.conversations import service as conversations

            out = conversations.add_outbound(s, s.get(Conversation, conv.id), text="Hi",  # type: ignore[arg-type]
                                             now=conv.created_at)
        s.add(WhatsappSend(message_id=out.id, conversation_id=conv.id, parts_total=1, parts_sent=1,
                           options=[{"n": 1, "title": "Talk to a person", "payload": "/request_human"}],
                           created_at=conv.created_at))
    assert _post(client, signer.request(INBOUND, signer.inbound(number, "1"))) == 200
    with factory() as s:
        last = s.execute(select(Message).where(Message.conversation_id == conv.id, Message.direction == "in")
                         .order_by(Message.id.desc())).scalars().first()
    assert last is not None and last.body == "1" and last.payload == "/request_human"


# -- status callbacks ------------------------------------------------------------------------------

def _sent_message(factory: sessionmaker[Session], sid: str) -> int:
    from api.channels.whatsapp import service as wa
    from api.clock import utcnow
    from api.conversations import service as conversations

    with unit_of_work(factory) as s:
        conv = wa.conversation_for(s, new_number(), now=utcnow(), market="US")
        msg = conversations.add_outbound(s, conv, text="sent earlier", now=utcnow())
        msg.status = MessageStatus.sent
        msg.channel_message_id = sid
        s.add(WhatsappPart(sid=sid, message_id=msg.id, part_index=0, status="queued", created_at=utcnow()))
        s.flush()
        return msg.id


def _status_of(factory: sessionmaker[Session], message_id: int) -> tuple[str, str | None]:
    with factory() as s:
        msg = s.get(Message, message_id)
        assert msg is not None
        return msg.status, msg.error


def test_status_callbacks_move_a_message_through_sent_delivered_read(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    client = make_wa_client()
    sid = signer.next_sid()
    mid = _sent_message(factory, sid)
    for status, expected in (("sent", "sent"), ("delivered", "delivered"), ("read", "read")):
        assert _post(client, signer.request(STATUS, signer.status(sid, status))) == 200
        assert _status_of(factory, mid)[0] == expected


def test_out_of_order_callbacks_do_not_move_a_status_backwards(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    client = make_wa_client()
    sid = signer.next_sid()
    mid = _sent_message(factory, sid)
    for status in ("read", "delivered", "sent", "queued", "failed"):
        assert _post(client, signer.request(STATUS, signer.status(sid, status, error_code="30008"))) == 200
    assert _status_of(factory, mid)[0] == "read"


def test_a_failed_callback_records_twilios_error_code(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    client = make_wa_client()
    sid = signer.next_sid()
    mid = _sent_message(factory, sid)
    assert _post(client, signer.request(STATUS, signer.status(sid, "sent"))) == 200
    assert _post(client, signer.request(STATUS, signer.status(sid, "undelivered", error_code="63016"))) == 200
    status, error = _status_of(factory, mid)
    assert status == "failed" and error is not None and "63016" in error
    with factory() as s:
        part = s.get(WhatsappPart, sid)
        assert part is not None and part.error_code == "63016"


def test_a_callback_for_an_unknown_sid_is_a_200_no_op(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, engine: Engine) -> None:
    client = make_wa_client()
    before = _counts(engine)
    r = client.post(**_as_kwargs(signer.request(STATUS, signer.status("SM" + "f" * 32, "delivered"))))
    assert r.status_code == 200 and r.text == EMPTY_TWIML
    assert _counts(engine) == before


def test_a_status_callback_with_a_bad_signature_is_rejected(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    client = make_wa_client()
    sid = signer.next_sid()
    mid = _sent_message(factory, sid)
    forged = signer.request(STATUS, signer.status(sid, "read"))
    forged.body = forged.body.replace(b"read", b"failed")
    assert _post(client, forged) == 403
    assert _post(client, signer.request(STATUS, signer.status(sid, "read"), signature="")) == 403
    assert _status_of(factory, mid)[0] == "sent"


def _as_kwargs(req: object) -> dict[str, object]:
    from tests.fakes.twilio import SignedRequest

    assert isinstance(req, SignedRequest)
    return {"url": req.path_and_query, "content": req.body, "headers": req.headers}


def test_outbox_rows_of_a_whatsapp_reply_stay_pending_for_the_dispatcher(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session]) -> None:
    import time

    client = make_wa_client(FakeRasa())
    number = new_number()
    assert _post(client, signer.request(INBOUND, signer.inbound(number, "hello bot"))) == 200
    conv = _conv(factory, number)
    deadline = time.monotonic() + 10
    rows: list[OutboxItem] = []
    while time.monotonic() < deadline:
        with factory() as s:
            rows = list(s.execute(select(OutboxItem).where(OutboxItem.conversation_id == conv.id)).scalars())
        if rows:
            break
        time.sleep(0.05)
    # the answer, and (a first-time number) the verification intake's first question
    assert [(r.channel, r.status) for r in rows] == [("whatsapp", "pending")] * 2


def test_end_to_end_a_message_is_answered_through_twilio_and_its_delivery_tracked(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session],
        fake_twilio: object) -> None:
    import time

    from tests.channels.conftest import WHATSAPP_FROM
    from tests.fakes.twilio import FakeTwilio

    assert isinstance(fake_twilio, FakeTwilio)
    # The app's dispatcher delivers every pending WhatsApp row in the shared test database; rows
    # that other tests left pending (they ran without a dispatcher) are not this test's to send.
    with factory.begin() as s:
        s.execute(update(OutboxItem).where(OutboxItem.channel == "whatsapp", OutboxItem.status == "pending")
                  .values(status="cancelled"))
    client = make_wa_client(FakeRasa(), twilio_whatsapp_from=WHATSAPP_FROM)  # the app's dispatcher runs
    number = new_number()
    assert _post(client, signer.request(INBOUND, signer.inbound(number, "hello bot"))) == 200
    deadline = time.monotonic() + 15
    while len(fake_twilio.bodies_to(number)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # the answer, then (a first-time number) the verification intake's first question
    sent, intake_question = [m for m in fake_twilio.sent if m.to == number]
    assert intake_question.body.endswith("Reply 1 for Talk to a person")
    assert sent.body == "echo: hello bot"  # one menu per turn: only the last bubble has options
    assert sent.from_ == WHATSAPP_FROM
    assert sent.status_callback == PUBLIC_URL + STATUS
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the sid is committed right after Twilio's answer
        with factory() as s:
            if s.get(WhatsappPart, sent.sid) is not None:
                break
        time.sleep(0.05)
    assert _post(client, signer.request(STATUS, signer.status(sent.sid, "delivered"))) == 200
    with factory() as s:
        msg = s.execute(select(Message).where(Message.channel_message_id == sent.sid)).scalar_one()
    assert msg.status == "delivered"
    # and the HCP's "1" is the quick reply's payload
    assert _post(client, signer.request(INBOUND, signer.inbound(number, "1"))) == 200
    conv = _conv(factory, number)
    with factory() as s:
        last = s.execute(select(Message).where(Message.conversation_id == conv.id, Message.direction == "in")
                         .order_by(Message.id.desc())).scalars().first()
    assert last is not None and last.payload == "/request_human"
