"""Twilio retries: every MessageSid delivered three times, concurrently, is processed once."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from api.app import create_app
from api.channels.whatsapp import ingest
from api.channels.whatsapp.models import WhatsappInbound, WhatsappThread
from api.conversations.models import InboxItem, Message, OutboxItem, OutboxStatus
from api.outbox_worker import OPEN
from api.pipeline.turn import null_safety_hook
from api.settings import Settings
from tests.channels.conftest import new_number
from tests.conftest import LiveServer, free_port
from tests.fakes.rasa import FakeRasa
from tests.fakes.twilio import SignedRequest, TwilioSigner

INBOUND = "/webhooks/twilio/whatsapp"


@pytest.mark.slow  # ~70 s on the shared 2-core box: 3,000 webhooks and 1,000 turns
def test_1000_message_sids_delivered_three_times_concurrently_are_processed_exactly_once(
        engine: Engine, wa_settings: Settings, signer: TwilioSigner) -> None:
    rasa = FakeRasa()
    port = free_port()
    settings = wa_settings.model_copy(update={"port": port})
    server = LiveServer(create_app(settings, engine=engine, safety_hook=null_safety_hook,
                                   rasa_transport=rasa.transport(), warm_knowledge=False), port).start()
    numbers = [new_number() for _ in range(50)]
    try:
        requests: list[SignedRequest] = []
        for i in range(1000):
            req = signer.request(INBOUND, signer.inbound(numbers[i % 50], f"question {i}"))
            requests.extend([req, req, req])
        random.Random(3).shuffle(requests)

        async def post_all() -> list[int]:
            sem = asyncio.Semaphore(64)
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                async def one(req: SignedRequest) -> int:
                    async with sem:
                        r = await client.post(req.path_and_query, content=req.body, headers=req.headers)
                        return r.status_code
                return await asyncio.gather(*(one(r) for r in requests))

        codes = asyncio.run(post_all())
        assert codes.count(200) == 3000

        def stored_not_ingested() -> int:
            with Session(ingest.intake_engine(engine)) as s:
                return int(s.execute(select(func.count()).select_from(WhatsappInbound)
                                     .where(WhatsappInbound.status == "pending")).scalar_one())

        deadline = time.monotonic() + 300
        while stored_not_ingested() and time.monotonic() < deadline:
            time.sleep(0.2)
        with Session(engine) as s:
            conv_ids = list(s.execute(select(WhatsappThread.conversation_id)
                                      .where(WhatsappThread.address.in_(numbers))).scalars())
        assert len(conv_ids) == 50  # one conversation per number, even when first messages race

        def pending() -> int:
            """Stored but not yet ingested (any number), plus ingested but not yet processed."""
            with Session(engine) as s:
                return stored_not_ingested() + int(s.execute(select(func.count()).select_from(InboxItem).where(
                    InboxItem.conversation_id.in_(conv_ids), InboxItem.status == "pending")).scalar_one())

        deadline = time.monotonic() + 300
        while pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        with Session(engine) as s:
            inbound = int(s.execute(select(func.count()).select_from(Message).where(
                Message.conversation_id.in_(conv_ids), Message.direction == "in")).scalar_one())
            inbox_done = int(s.execute(select(func.count()).select_from(InboxItem).where(
                InboxItem.conversation_id.in_(conv_ids), InboxItem.status == "done")).scalar_one())
        assert inbound == 1000
        assert inbox_done == 1000
        rasa_turns = [c for c in rasa.calls if c["sender"] in set(conv_ids)]
        assert len(rasa_turns) == 1000
        assert len({c["message"] for c in rasa_turns}) == 1000
        assert rasa.overlaps == 0
    finally:
        server.stop()
        _cancel_queued_replies(engine, numbers)


def _cancel_queued_replies(engine: Engine, numbers: list[str]) -> None:
    """Close the WhatsApp replies of these numbers' conversations, which no dispatcher sent here (the app
    has no sender number): the test database is shared, and a later test's dispatcher, which delivers every
    open row, would otherwise spend ~20 s sending these 1,000 to the fake Twilio."""
    with Session(engine) as s, s.begin():
        conv_ids = select(WhatsappThread.conversation_id).where(WhatsappThread.address.in_(numbers))
        s.execute(update(OutboxItem).where(OutboxItem.conversation_id.in_(conv_ids),
                                           OutboxItem.status.in_(OPEN)).values(status=OutboxStatus.cancelled))
