"""``create_app(settings)``: the api process, wired. Nothing heavy happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.audit import service as audit
from api.body_limit import BodyLimit
from api.channels.webchat.router import STATIC as WEBCHAT_STATIC
from api.channels.webchat.router import router as webchat_router
from api.channels.whatsapp.router import router as whatsapp_router
from api.clock import Clock, SystemClock
from api.consoles import routers as console_routers
from api.consoles.render import STATIC as CONSOLE_STATIC
from api.consoles.render import render as render_console
from api.content import make_send_gate
from api.conversations.models import Conversation, Message
from api.db import is_transient, make_engine, make_session_factory
from api.errors import ConciergeError, DatabaseBusy, RateLimited
from api.handoffs.assign import assign_policy
from api.handoffs.hours import staff_hours
from api.handoffs.service import handoff_from_api
from api.health.router import router as health_router
from api.jobs import one_at_a_time
from api.outbox import WebchatSender
from api.pipeline.turn import SafetyHook, SafetyOutcomeLike, TurnProcessor
from api.pipeline.worker import ConversationWorker
from api.rasa.client import RasaClient
from api.rasa.router import router as rasa_router
from api.ratelimit import make_limiter
from api.relay.hooks import install as install_relay
from api.relay.stream import Relay
from api.security_headers import SecurityHeaders
from api.settings import Settings
from api.staff.auth import (
    PASSWORD_PAGE,
    LoginRequired,
    PasswordChangeRequired,
    check_routes_gated,
    current_identity,
    is_staff_path,
    login_redirect_url,
)
from api.state import AppState
from feedback.redact import install_log_redaction
from feedback.rollups import install as install_rollups

if TYPE_CHECKING:
    from api.safety.classifier import RuleModelScreen

log = logging.getLogger("concierge.app")


def default_safety_hook(settings: Settings) -> SafetyHook:
    """The screen every inbound message passes, with its findings persisted by the service."""
    from api.safety.classifier import build_screen
    from api.safety.service import apply

    products = settings.library_path / "products.yaml"
    screen = build_screen(settings.resolved_model_dir, products if products.exists() else None)
    # Train or load now, in the background, so the first HCP message does not wait for it.
    threading.Thread(target=screen.warm_up, name="safety-warmup", daemon=True).start()

    return ScreenHook(screen, apply, review_rate=settings.ae_review_sample_rate)


class ScreenHook:
    """The default safety hook: the classifier screen, its findings persisted by ``apply``; ``ready``
    tells the readiness probe whether the screen has loaded."""

    def __init__(self, screen: RuleModelScreen, apply: Callable[..., SafetyOutcomeLike], *,
                 review_rate: float = 0.02) -> None:
        self.screen = screen
        self.apply = apply
        # share of unflagged messages drawn for the blinded AE review queue (api.safety.recall)
        self.review_rate = review_rate

    def __call__(self, session: Session, conv: Conversation, msg: Message, now: datetime) -> SafetyOutcomeLike:
        from api.safety.context import screen_context
        from api.safety.service import SafetyOutcome

        # The screen knows what the bot had just asked: a form answer is screened as that answer.
        context = screen_context(session, conv, msg)
        result = self.screen.screen(msg.body, context=context)
        outcome = self.apply(session, conversation=conv, message=msg, result=result, now=now,
                             review_rate=self.review_rate)
        if isinstance(outcome, SafetyOutcome):
            outcome.asked = context.asked  # the turn leaves an answer to a question to the form
        return outcome

    def ready(self) -> bool:
        return self.screen.ready()


def _warm_staff_screen(settings: Settings) -> None:
    from api.handoffs import screening

    try:
        screening.screener_for(settings).warm_up()
    except Exception:
        log.exception("staff reply screen warm-up failed")


def _warm_knowledge(state: AppState) -> None:
    try:
        from knowledge.service import get_knowledge_base

        kb = get_knowledge_base(state.settings.resolved_index_dir)
        state.knowledge_ready = kb.ready
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
    from feedback.fatigue import FatiguePolicy

    client = TwilioClient(api_url=settings.twilio_api_url, account_sid=settings.twilio_account_sid,
                          auth_token=settings.twilio_auth_token, timeout=settings.whatsapp_send_timeout)
    return OutboxDispatcher(
        factory, client, clock, make_send_gate(settings.default_market),
        from_number=settings.twilio_whatsapp_from, templates=settings.whatsapp_templates,
        status_callback_url=settings.public_url.rstrip("/") + "/webhooks/twilio/status",
        policy=DispatchPolicy(max_attempts=settings.whatsapp_max_attempts, retry_base=settings.whatsapp_retry_base,
                              retry_max=settings.whatsapp_retry_max),
        fatigue_policy=FatiguePolicy.from_settings(settings),
    )


def _start_periodic(name: str, interval: float, job: Callable[[], str | None],
                    factory: sessionmaker[Session] | None = None) -> asyncio.Task[None] | None:
    """Run ``job`` in a thread every ``interval`` seconds (first run after one interval; 0: never).

    A failing run is logged and the next one happens as usual; ``job`` returns a line to log or None.
    With ``factory`` bound to PostgreSQL, a round is skipped while another process runs the same job
    (api/jobs.py)."""
    if interval <= 0:
        return None
    bind = factory.kw.get("bind") if factory is not None else None
    job = one_at_a_time(bind if isinstance(bind, Engine) else None, name, job)

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            run = asyncio.ensure_future(asyncio.to_thread(job))
            try:
                line = await asyncio.shield(run)
                if line:
                    log.info("%s: %s", name, line)
            except asyncio.CancelledError:
                # Shutting down mid-run: let the run finish, so no thread outlives the app.
                with contextlib.suppress(Exception):
                    await run
                raise
            except Exception:
                log.exception("%s failed", name)

    return asyncio.get_running_loop().create_task(loop(), name=name)


def _start_rollup_refresher(settings: Settings, factory: sessionmaker[Session],
                            clock: Clock) -> asyncio.Task[None] | None:
    """Refresh the CX rollups every ``cx_rollup_interval_s``."""
    from feedback import rollups

    def job() -> str:
        report = rollups.refresh(factory, now=clock.now(), lookback_days=settings.cx_rollup_lookback_days)
        return f"{len(report.days)} days recomputed, {report.rows} rows, {report.ms:.0f} ms"

    return _start_periodic("cx-rollups", settings.cx_rollup_interval_s, job, factory)


def _start_sla_sweeper(settings: Settings, factory: sessionmaker[Session],
                       clock: Clock) -> asyncio.Task[None] | None:
    """Raise and deliver SLA alerts every ``sla_sweep_interval_s``."""
    from api.sla import service as sla

    def job() -> str | None:
        report = sla.sweep_configured(factory, settings, clock.now())
        if not (report.raised or report.failed):
            return None
        return f"{report.raised} raised, {report.delivered} delivered, {report.failed} failed"

    return _start_periodic("sla-alerts", settings.sla_sweep_interval_s, job, factory)


def _start_assign_sweeper(settings: Settings, factory: sessionmaker[Session],
                          clock: Clock) -> asyncio.Task[None] | None:
    """Auto-assignment every ``assign_sweep_interval_s``: expired offers move on, waiting handoffs are offered."""
    from api.handoffs import assign

    policy = assign.assign_policy(settings)
    if not policy.enabled:
        return None

    def job() -> str | None:
        report = assign.sweep(factory, policy, clock.now())
        if not (report.expired or report.offered):
            return None
        return f"{report.offered} offered, {report.expired} expired offers moved on, {report.waiting} waiting"

    return _start_periodic("auto-assign", settings.assign_sweep_interval_s, job, factory)


def _start_audit_checkpointer(settings: Settings, factory: sessionmaker[Session],
                              clock: Clock) -> asyncio.Task[None] | None:
    """A signed checkpoint of the audit chain head every ``audit_checkpoint_interval_s`` (api.audit.checkpoint),
    only for a chain that verifies."""
    from api.audit import checkpoint

    def job() -> str | None:
        key = audit.current_key()
        with factory() as session:
            result = audit.verify(session, key)
            if not result.ok:
                log.error("audit chain does not verify (%s at seq %s): no checkpoint written",
                          result.reason, result.first_bad_seq)
                return None
            path = checkpoint.write(session, key, settings.resolved_audit_checkpoint_dir, clock.now())
        return f"checkpoint {path.name} (seq {result.head_seq})" if path else None

    return _start_periodic("audit-checkpoints", settings.audit_checkpoint_interval_s, job, factory)


def build_processor(settings: Settings, factory: Any, clock: Clock, rasa: RasaClient,
                    safety_hook: SafetyHook | None = None) -> TurnProcessor:
    """The turn pipeline (safety screen first, then Rasa), as the api and ``concierge worker`` run it."""
    processor = TurnProcessor(
        session_factory=factory, rasa=rasa, clock=clock,
        senders={"webchat": WebchatSender()}, gate=make_send_gate(settings.default_market),
        default_market=settings.default_market,
        safety_hook=safety_hook or default_safety_hook(settings),
        handoff_hook=functools.partial(handoff_from_api, hours=staff_hours(settings),
                                        policy=assign_policy(settings)),
        hours=staff_hours(settings),
    )
    processor.transient_deadline_s = settings.turn_retry_deadline_s
    return processor


def share_conversations(settings: Settings, engine: Engine, worker: ConversationWorker, bus: Any) -> None:
    """On PostgreSQL, several processes serve the same conversations: turns run under a per-conversation
    lease and waiters hear of turns run elsewhere on ``bus`` (api/pipeline/lease.py). SQLite: one process."""
    if engine.dialect.name != "postgresql":
        return
    from api.pipeline.lease import LeaseStore

    worker.share(LeaseStore(engine, lease_s=settings.conversation_lease_s), bus, reply_poll_s=settings.reply_poll_s)


def whatsapp_ingester(settings: Settings, engine: Engine, factory: Any, clock: Clock,
                      worker: ConversationWorker, dispatcher: Any) -> Any:
    """Turns stored WhatsApp webhooks into messages for ``worker`` (``api.channels.whatsapp.ingest``)."""
    from api.channels.whatsapp.ingest import Ingester

    return Ingester(engine, factory, clock, market=settings.default_market,
                    idle_poll_max=settings.whatsapp_idle_poll_s,
                    on_ingested=lambda conversation_id: worker.kick(conversation_id),
                    on_replies=dispatcher.kick if dispatcher is not None else None)


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
    # COMPLIANCE "No personal data in logs": every record's message and traceback go through redact().
    install_log_redaction()
    audit.configure_from(settings)  # the audit chain's key (outside the database)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        eng = engine or make_engine(settings.database_url)
        install_rollups()  # CX rollup days marked dirty on every flush
        factory = make_session_factory(eng)
        the_clock = clock or SystemClock()
        rasa = RasaClient.from_settings(settings, transport=rasa_transport)
        processor = build_processor(settings, factory, the_clock, rasa, safety_hook)
        worker = ConversationWorker(processor, factory)
        # Live relay: hints published after each commit that changed a conversation (api/relay).
        relay = await Relay.start(settings.redis_url, eng)
        install_relay(factory, relay.bus)
        worker.on_processed = relay.bus.publish
        share_conversations(settings, eng, worker, relay.bus)
        hook = processor.safety_hook
        state = AppState(settings=settings, engine=eng, session_factory=factory, clock=the_clock,
                         rasa=rasa, worker=worker, limiter=make_limiter(settings.redis_url), relay=relay,
                         safety_ready=hook.ready if isinstance(hook, ScreenHook) else lambda: True)
        app.state.concierge = state
        if warm_knowledge:
            threading.Thread(target=_warm_knowledge, args=(state,), name="kb-warmup", daemon=True).start()
        if not isinstance(hook, ScreenHook):
            # Staff replies pass the staff reply screen, whose AE model the app's own safety hook loads at
            # start; with another hook, load it here so a rep's first reply does not wait for it.
            threading.Thread(target=_warm_staff_screen, args=(settings,), name="staff-screen-warmup",
                             daemon=True).start()
        # WhatsApp after the ack: here (inline), or in the `concierge worker` process (process).
        inline = settings.whatsapp_worker == "inline"
        dispatcher = _whatsapp_dispatcher(settings, factory, the_clock) if inline else None
        if dispatcher is not None:
            state.whatsapp_dispatcher = dispatcher
            dispatcher.start()
            worker.on_turn_done = lambda _result: dispatcher.kick()
        rollup_task = _start_rollup_refresher(settings, factory, the_clock)
        sla_task = _start_sla_sweeper(settings, factory, the_clock)
        checkpoint_task = _start_audit_checkpointer(settings, factory, the_clock)
        assign_task = _start_assign_sweeper(settings, factory, the_clock)
        ingester = None
        if inline:
            ingester = whatsapp_ingester(settings, eng, factory, the_clock, worker, dispatcher)
            state.whatsapp_ingester = ingester
            ingester.start()
        skip = () if inline else ("whatsapp",)
        recovered = worker.recover(skip_channels=skip)
        if recovered:
            log.info("re-processing inbound work left by a previous run in %d conversations", recovered)
        worker.start_sweeper(settings.inbox_sweep_interval_s, skip_channels=skip)
        try:
            yield
        finally:
            for task in (rollup_task, sla_task, checkpoint_task, assign_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await relay.close()
            if ingester is not None:
                await ingester.close()
            await worker.close()
            if dispatcher is not None:
                await dispatcher.close()
            await rasa.aclose()
            await state.limiter.close()
            if engine is None:
                eng.dispose()

    app = FastAPI(title="HCP Concierge", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodyLimit, default=settings.max_request_bytes, prefixes=body_limits(settings))
    app.add_middleware(SecurityHeaders, https=settings.public_url.lower().startswith("https://"))

    @app.exception_handler(ConciergeError)
    async def concierge_error(request: Request, exc: ConciergeError) -> Response:
        if _console_page(request):
            if isinstance(exc, LoginRequired):
                return RedirectResponse(login_redirect_url(exc.next_url), status_code=303)
            if isinstance(exc, PasswordChangeRequired):
                return RedirectResponse(PASSWORD_PAGE, status_code=303)
            titles = {403: "Not allowed", 404: "Not found", 409: "Already taken"}
            return render_console(request, "error.html", current_identity(request), status_code=exc.status_code,
                                  title=titles.get(exc.status_code, "Something went wrong"), message=exc.message)
        body: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.detail is not None:
            body["detail"] = exc.detail
        headers = ({"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited)
                   else {"Retry-After": "2"} if isinstance(exc, DatabaseBusy) else None)
        return JSONResponse({"error": body}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        # An outage is not a bug: 503 + Retry-After, so Twilio and the web chat page try again
        # (nothing was acknowledged, so nothing is lost). One log line, no traceback per request.
        if is_transient(exc):
            log.warning("database unavailable for %s %s: %s", request.method, request.url.path, type(exc).__name__)
            return JSONResponse({"error": {"code": "database_unavailable",
                                           "message": "The service is briefly unavailable. Please try again."}},
                                status_code=503, headers={"Retry-After": "5"})
        log.error("database error for %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": {"code": "internal_error", "message": "Something went wrong on our side."}},
                            status_code=500)

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
    for console_router in console_routers():
        app.include_router(console_router)
    app.mount("/static/webchat", StaticFiles(directory=WEBCHAT_STATIC, check_dir=False), name="webchat-static")
    app.mount("/static/console", StaticFiles(directory=CONSOLE_STATIC, check_dir=False), name="console-static")
    check_routes_gated(app)
    return app


def body_limits(settings: Settings) -> list[tuple[str, int]]:
    """Per-route request-body limits (``api.body_limit``), most specific prefix first."""
    from api.channels.whatsapp.router import MAX_BODY_BYTES as TWILIO_MAX
    from api.consoles.content import FORM_OVERHEAD
    from knowledge.admin import MAX_UPLOAD_BYTES

    webchat = settings.max_message_chars * 6 + 1024 + 512  # JSON-escaped text + payload + envelope
    return [("/api/webchat/", webchat), ("/webhooks/twilio/", TWILIO_MAX),
            # The upload route refuses a declared size past its limit with its own page; this bound
            # (twice that) is for what it cannot see coming.
            ("/console/content/library", 2 * (MAX_UPLOAD_BYTES + FORM_OVERHEAD)), ("/rasa/webhook", 16 * 1024 * 1024)]


def _console_page(request: Request) -> bool:
    """A browser asking for a console page gets HTML errors; API clients get JSON."""
    path = request.url.path
    accept = request.headers.get("accept", "")
    return is_staff_path(path) and not path.startswith("/api/") and "application/json" not in accept
