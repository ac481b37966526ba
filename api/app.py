"""``create_app(settings)``: the api process, wired. Nothing heavy happens at import time."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.channels.webchat.router import STATIC as WEBCHAT_STATIC
from api.channels.webchat.router import router as webchat_router
from api.channels.whatsapp.router import router as whatsapp_router
from api.clock import Clock, SystemClock
from api.content import make_send_gate
from api.conversations.models import Conversation, Message
from api.conversations.turn import SafetyHook, SafetyOutcomeLike, TurnProcessor
from api.db import make_engine, make_session_factory
from api.errors import ConciergeError
from api.handoffs.service import handoff_from_api
from api.health.router import router as health_router
from api.outbox import WebchatSender
from api.rasa.client import RasaClient
from api.rasa.router import router as rasa_router
from api.settings import Settings
from api.state import AppState
from api.worker import ConversationWorker

log = logging.getLogger("concierge.app")


def default_safety_hook(settings: Settings) -> SafetyHook:
    """The screen every inbound message passes, with its findings persisted by the service."""
    from api.safety.classifier import build_screen
    from api.safety.service import apply

    products = settings.library_path / "products.yaml"
    screen = build_screen(settings.resolved_model_dir, products if products.exists() else None)
    # Train or load now, in the background, so the first HCP message does not wait for it.
    threading.Thread(target=screen.warm_up, name="safety-warmup", daemon=True).start()

    def hook(session: Session, conv: Conversation, msg: Message, now: datetime) -> SafetyOutcomeLike:
        outcome: SafetyOutcomeLike = apply(session, conversation=conv, message=msg,
                                           result=screen.screen(msg.body), now=now)
        return outcome

    hook.ready = screen.ready  # type: ignore[attr-defined]
    return hook


def _warm_knowledge(state: AppState) -> None:
    try:
        from knowledge.service import get_knowledge_base

        kb = get_knowledge_base(state.settings.resolved_index_dir)
        state.extras["knowledge_ready"] = kb.ready
        with state.session_factory() as session:
            kb.warm_up(session)
    except Exception:
        log.exception("knowledge index warm-up failed")


def _whatsapp_dispatcher(settings: Settings, factory: Any, clock: Clock) -> Any:
    """The outbox dispatcher for WhatsApp, when Twilio is configured."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_whatsapp_from):
        return None
    from api.channels.whatsapp.client import TwilioClient
    from api.outbox_worker import DispatchPolicy, OutboxDispatcher

    client = TwilioClient(api_url=settings.twilio_api_url, account_sid=settings.twilio_account_sid,
                          auth_token=settings.twilio_auth_token, timeout=settings.whatsapp_send_timeout)
    return OutboxDispatcher(
        factory, client, clock, make_send_gate(settings.default_market),
        from_number=settings.twilio_whatsapp_from, templates=settings.whatsapp_templates,
        status_callback_url=settings.public_url.rstrip("/") + "/webhooks/twilio/status",
        policy=DispatchPolicy(max_attempts=settings.whatsapp_max_attempts, retry_base=settings.whatsapp_retry_base,
                              retry_max=settings.whatsapp_retry_max),
    )


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
    safety_hook: SafetyHook | None = None,
    rasa_transport: httpx.AsyncBaseTransport | None = None,
    warm_knowledge: bool = True,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        eng = engine or make_engine(settings.database_url)
        factory = make_session_factory(eng)
        the_clock = clock or SystemClock()
        rasa = RasaClient(settings.rasa_url, settings.rasa_token, settings.rasa_timeout,
                          transport=rasa_transport)
        processor = TurnProcessor(
            session_factory=factory, rasa=rasa, clock=the_clock,
            senders={"webchat": WebchatSender()}, gate=make_send_gate(settings.default_market),
            default_market=settings.default_market,
            safety_hook=safety_hook or default_safety_hook(settings),
            handoff_hook=handoff_from_api,
        )
        worker = ConversationWorker(processor, factory)
        state = AppState(settings=settings, engine=eng, session_factory=factory, clock=the_clock,
                         rasa=rasa, worker=worker)
        state.extras["safety_ready"] = getattr(processor.safety_hook, "ready", lambda: True)
        app.state.concierge = state
        if warm_knowledge:
            threading.Thread(target=_warm_knowledge, args=(state,), name="kb-warmup", daemon=True).start()
        dispatcher = _whatsapp_dispatcher(settings, factory, the_clock)
        if dispatcher is not None:
            state.extras["whatsapp_dispatcher"] = dispatcher
            dispatcher.start()
            worker.on_turn_done = lambda _result: dispatcher.kick()
        recovered = worker.recover()
        if recovered:
            log.info("re-processing inbound work left by a previous run in %d conversations", recovered)
        try:
            yield
        finally:
            await worker.close()
            if dispatcher is not None:
                await dispatcher.close()
            await rasa.aclose()
            if engine is None:
                eng.dispose()

    app = FastAPI(title="HCP Concierge", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(ConciergeError)
    async def concierge_error(request: Request, exc: ConciergeError) -> JSONResponse:
        body: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.detail is not None:
            body["detail"] = exc.detail
        return JSONResponse({"error": body}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": {"code": "invalid_input", "message": f"{where}: {first['msg']}"}},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                            status_code=exc.status_code)

    app.include_router(health_router)
    app.include_router(webchat_router)
    app.include_router(whatsapp_router)
    app.include_router(rasa_router)
    app.mount("/static/webchat", StaticFiles(directory=WEBCHAT_STATIC, check_dir=False), name="webchat-static")
    return app
