"""Ack first, ingest after: the webhook stores only the raw delivery; the worker does the rest, in order."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.audit.models import AuditEvent
from api.channels.whatsapp import ingest
from api.channels.whatsapp.models import WhatsappInbound, WhatsappThread
from api.clock import SystemClock
from api.conversations.models import Conversation, InboxItem, Message
from api.pipeline.turn import null_safety_hook
from api.safety import service as safety
from api.safety.models import Consent
from api.settings import Settings
from api.worker_process import run_worker
from tests.channels.conftest import new_number
from tests.channels.test_outbox_dispatcher import _deliver, _dispatcher, _open_conversation, _queue, _rows
from tests.fakes.rasa import FakeRasa
from tests.fakes.twilio import FakeTwilio, SignedRequest, TwilioSigner

INBOUND = "/webhooks/twilio/whatsapp"


def _post(client: TestClient, req: SignedRequest) -> int:
    return client.post(req.path_and_query, content=req.body, headers=req.headers).status_code


def _counts(engine: Engine) -> tuple[int, ...]:
    with Session(engine) as s:
        return tuple(int(s.execute(select(func.count()).select_from(t)).scalar_one())
                     for t in (Message, Conversation, InboxItem, WhatsappThread, Consent, AuditEvent))


def _raw(engine: Engine, sids: list[str]) -> list[WhatsappInbound]:
    with Session(ingest.intake_engine(engine)) as s:
        return list(s.execute(select(WhatsappInbound).where(WhatsappInbound.message_sid.in_(sids))
                              .order_by(WhatsappInbound.id)).scalars())


def test_the_ack_stores_only_the_raw_webhook_and_a_redelivery_changes_nothing(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, engine: Engine) -> None:
    client = make_wa_client(whatsapp_worker="process")  # nothing in the api ingests
    before = _counts(engine)
    params = signer.inbound(new_number(), "STOP")
    sid = params["MessageSid"]
    req = signer.request(INBOUND, params)
    assert _post(client, req) == 200
    assert _post(client, req) == 200  # Twilio's retry: already stored, still acknowledged
    rows = _raw(engine, [sid])
    assert [(r.status, r.opt_out) for r in rows] == [("pending", True)]
    assert ["MessageSid", sid] in rows[0].params
    # No conversation, message, inbox row, consent or audit event was written by the ack.
    assert _counts(engine) == before


def test_webhooks_acked_while_no_worker_ran_are_all_processed_once_in_order_when_it_starts(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, engine: Engine,
        wa_settings: Settings, factory: sessionmaker[Session]) -> None:
    client = make_wa_client(whatsapp_worker="process")
    numbers = [new_number() for _ in range(5)]
    sent: dict[str, list[str]] = {n: [] for n in numbers}
    sids: list[str] = []
    for i in range(40):
        number = numbers[i % 5]
        params = signer.inbound(number, f"question {i} — dosing?")
        sids.append(params["MessageSid"])
        req = signer.request(INBOUND, params)
        for _ in range(2 if i % 7 == 0 else 1):  # some re-delivered
            assert _post(client, req) == 200
        sent[number].append(f"question {i} — dosing?")
    assert {r.status for r in _raw(engine, sids)} == {"pending"}  # the "crash": acked, never processed

    rasa = FakeRasa()
    settings = wa_settings.model_copy(update={"whatsapp_worker": "process"})

    async def worker_until_done() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_worker(settings, stop, engine=engine, safety_hook=null_safety_hook,
                                              rasa_transport=rasa.transport(), ready=ready))
        await ready.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            raw = await asyncio.to_thread(_raw, engine, sids)
            if {r.status for r in raw} == {"done"} and await asyncio.to_thread(_pending_inbox, engine, numbers) == 0:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task

    asyncio.run(worker_until_done())
    raw = _raw(engine, sids)
    assert [r.status for r in raw] == ["done"] * 40 and all(r.message_id for r in raw)
    assert {(len(r.params), r.from_address) for r in raw} == {(0, "")}  # the raw copy is not kept
    with factory() as s:
        conv_of = {t.address: t.conversation_id for t in s.execute(
            select(WhatsappThread).where(WhatsappThread.address.in_(numbers))).scalars()}
        for number in numbers:
            bodies = list(s.execute(select(Message.body).where(Message.conversation_id == conv_of[number],
                                                               Message.direction == "in")
                                    .order_by(Message.id)).scalars())
            assert bodies == sent[number]  # once each, in the order they were acknowledged
        received = {e.subject_id: e.data for e in s.execute(
            select(AuditEvent).where(AuditEvent.action == "message.received",
                                     AuditEvent.subject_id.in_([str(r.message_id) for r in raw]))).scalars()}
        created = {mid: at for mid, at in s.execute(select(Message.id, Message.created_at)
                                                    .where(Message.id.in_([r.message_id for r in raw]))).all()}
    assert len(received) == 40
    for r in raw:  # the audit records when the webhook was stored, not only when it was ingested
        assert received[str(r.message_id)]["received_at"] == r.received_at.isoformat()
        # ... and the message is dated then: an AE's day 0 (safety.service) is the ack, not the ingest
        assert created[r.message_id] == r.received_at
    turns = [c for c in rasa.calls if c["sender"] in set(conv_of.values())]
    assert len(turns) == 40 and len({c["message"] for c in turns}) == 40
    assert rasa.overlaps == 0


def _pending_inbox(engine: Engine, numbers: list[str]) -> int:
    with Session(engine) as s:
        return int(s.execute(
            select(func.count()).select_from(InboxItem)
            .join(WhatsappThread, WhatsappThread.conversation_id == InboxItem.conversation_id)
            .where(WhatsappThread.address.in_(numbers), InboxItem.status == "pending")).scalar_one())


def test_a_stop_stored_but_not_yet_ingested_already_stops_queued_replies(
        make_wa_client: Callable[..., TestClient], signer: TwilioSigner, factory: sessionmaker[Session],
        fake_twilio: FakeTwilio, twilio_url: str) -> None:
    client = make_wa_client(whatsapp_worker="process")
    now = SystemClock().now()
    conv_id, address = _open_conversation(factory, now)
    _queue(factory, conv_id, ["an answer queued before the STOP"], now)
    assert _post(client, signer.request(INBOUND, signer.inbound(address, "STOP"))) == 200
    with factory() as s:
        conv = s.get(Conversation, conv_id)
        assert conv is not None
        assert not safety.is_conversation_opted_out(s, conv)  # consent not recorded yet: not ingested
    _deliver(_dispatcher(factory, twilio_url, SystemClock()), {conv_id})
    assert _rows(factory, conv_id) == [("cancelled", "failed", 0)]
    assert [m for m in fake_twilio.sent if m.to == address] == []


def test_an_unreachable_database_makes_the_ingester_back_off_and_say_so_once(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy.exc import OperationalError

    rounds = [0]
    ingester = ingest.Ingester(engine, sessionmaker(engine), SystemClock(), market="US", on_ingested=lambda _c: None)
    down = [True]
    real = ingester._pending_ids

    def pending_ids() -> list[int]:
        if down[0]:
            rounds[0] += 1
            raise OperationalError("SELECT ...", {}, Exception("connection refused"))
        return real()

    ingester._pending_ids = pending_ids  # type: ignore[method-assign]

    async def run() -> None:
        ingester.start()
        for _ in range(15):                 # webhooks keep arriving during the outage
            ingester.kick()
            await asyncio.sleep(0.1)
        down[0] = False
        await asyncio.sleep(3.0)            # the next try after the current backoff finds it back
        await ingester.close()

    with caplog.at_level("INFO", logger="concierge.whatsapp.ingest"):
        asyncio.run(run())
    assert rounds[0] <= 4                    # 1.5 s down, backoff 0.5, 1 s: not a round per kick or 50 ms poll
    records = [r for r in caplog.records if r.name == "concierge.whatsapp.ingest"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"]   # one line down, one line back
    assert all(r.exc_info is None for r in records)                # no tracebacks for an outage


def test_an_idle_ingester_looks_less_and_less_often_and_a_kick_brings_it_back(engine: Engine) -> None:
    ingester = ingest.Ingester(engine, sessionmaker(engine), SystemClock(), market="US", on_ingested=lambda _c: None,
                               poll_interval=0.05, idle_poll_max=0.4)
    looks: list[float] = []
    real = ingester._pending_ids

    def pending_ids() -> list[int]:
        looks.append(time.monotonic())
        return real()

    ingester._pending_ids = pending_ids  # type: ignore[method-assign]

    async def run() -> tuple[int, float]:
        ingester.start()
        await asyncio.sleep(1.6)        # idle: waits of 0.05, 0.1, 0.2, 0.4, 0.4, …
        idle_looks = len(looks)
        kicked_at = time.monotonic()
        ingester.kick()                 # a webhook stored by this process
        await asyncio.sleep(0.2)
        woke_after = next(t for t in looks if t >= kicked_at) - kicked_at
        await ingester.close()
        return idle_looks, woke_after

    idle_looks, woke_after = asyncio.run(run())
    assert 4 <= idle_looks <= 8          # a fixed 50 ms poll would have looked ~32 times
    assert woke_after < 0.1              # not the idle wait: at once
    gaps = [b - a for a, b in itertools.pairwise(looks)]
    assert max(gaps) < 0.4 + 0.15        # never longer than the ceiling: another process's webhook waits ≤ 0.4 s
