"""``concierge worker``: the WhatsApp work that follows the ack, in its own process.

The api process answers Twilio after one INSERT (``api.channels.whatsapp.ingest``). This process
does the rest — ingest the stored webhooks in order, the safety screen (AE and opt-out first), the
turn with Rasa, and the outbox dispatcher that sends the replies through Twilio — at a lower CPU
priority (``CONCIERGE_WORKER_NICE``, default 5), so a burst of turns cannot starve the acks of
CPU or of the GIL. ``concierge run`` starts it beside the api (``CONCIERGE_WHATSAPP_WORKER=process``);
with ``concierge serve`` start it yourself: once per SQLite database, or several on PostgreSQL, where
conversations are shared out by lease (api/pipeline/lease.py), ingest takes stored webhooks in order
under row locks and the dispatcher claims each outbox row for one sender. It picks up every webhook
left unprocessed when it starts (a crash between ack and processing loses nothing). Web chat is not
served here: its request waits for the reply in an api process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import httpx
from sqlalchemy import Engine

from api.pipeline.turn import SafetyHook
from api.settings import Settings

log = logging.getLogger("concierge.worker_process")


async def run_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    engine: Engine | None = None,
    safety_hook: SafetyHook | None = None,
    rasa_transport: httpx.AsyncBaseTransport | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run ingest, turns and the WhatsApp dispatcher until ``stop`` is set."""
    from api.app import _whatsapp_dispatcher, build_processor, share_conversations, whatsapp_ingester
    from api.audit.service import configure_from
    from api.clock import SystemClock
    from api.db import make_engine, make_session_factory
    from api.pipeline.worker import ConversationWorker
    from api.rasa.client import RasaClient
    from api.relay.bus import make_bus
    from api.relay.hooks import install as install_relay
    from feedback.rollups import install as install_rollups

    configure_from(settings)  # the audit chain's key
    install_rollups()  # CX rollup days marked dirty on every flush
    eng = engine or make_engine(settings.database_url)
    factory = make_session_factory(eng)
    clock = SystemClock()
    rasa = RasaClient.from_settings(settings, transport=rasa_transport)
    processor = build_processor(settings, factory, clock, rasa, safety_hook)
    worker = ConversationWorker(processor, factory)
    bus = make_bus(settings.redis_url)  # with Redis, live staff streams in the api hear about turns here
    await bus.start()
    install_relay(factory, bus)
    worker.on_processed = bus.publish
    share_conversations(settings, eng, worker, bus)
    dispatcher: Any = _whatsapp_dispatcher(settings, factory, clock)
    if dispatcher is not None:
        dispatcher.start()
        worker.on_turn_done = lambda _result: dispatcher.kick()
    ingester = whatsapp_ingester(settings, eng, factory, clock, worker, dispatcher)
    recovered = worker.recover(channels=("whatsapp",))
    if recovered:
        log.info("re-processing inbound work left by a previous run in %d conversations", recovered)
    worker.start_sweeper(settings.inbox_sweep_interval_s, channels=("whatsapp",))
    ingester.start()
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await ingester.close()
        await worker.close()
        if dispatcher is not None:
            await dispatcher.close()
        await bus.close()
        await rasa.aclose()
        if engine is None:
            eng.dispose()


def main(settings: Settings) -> int:
    from feedback.redact import install_log_redaction

    if settings.worker_nice:
        os.nice(settings.worker_nice)
    install_log_redaction()  # COMPLIANCE: no personal data in logs, here as in the api
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        ready = asyncio.Event()
        task = loop.create_task(run_worker(settings, stop, ready=ready))
        await asyncio.wait([task, loop.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            log.info("worker ready (pid %d, nice %d)", os.getpid(), os.nice(0))
        await task

    asyncio.run(_main())
    return 0


def start(settings: Settings) -> Any:
    """``concierge worker`` as a child process (``concierge run``); returns the process."""
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(target=main, args=(settings,), name="concierge-worker")
    proc.start()
    return proc
