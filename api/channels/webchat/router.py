"""Web chat channel: the JSON API the page (and tests, and benchmarks) use.

The session secret never travels in a URL (URLs end up in access logs, proxies and browser
history). The page sends it in the ``X-Chat-Session`` header:

- ``POST /api/webchat/sessions`` → ``{"session_id": <secret>, "stream_url": ...}`` and an HttpOnly,
  SameSite=Strict cookie scoped to that session's ``stream_url`` path (``Secure`` on https);
- ``POST /api/webchat/messages`` / ``GET /api/webchat/messages?after=<id>`` with the header;
- ``GET <stream_url>/events?after=<id>``: a server-sent event stream (``event: message``,
  ``id: <message id>``) of the same messages, authenticated by that cookie (EventSource cannot send
  headers; the path names the conversation, not the secret); ``POST /api/webchat/session/stream``
  (header) issues the cookie again for a session restored from storage.

The older form with the secret in the path (``/api/webchat/sessions/{secret}/...``) still works
during a deprecation window; the access log never shows that path segment (``feedback.redact``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.channels.webchat.schemas import (
    ButtonRead,
    MessageCreate,
    MessageRead,
    SessionRead,
    TurnRead,
    WaitingRead,
)
from api.conversations import service as conversations
from api.conversations.models import Conversation, InboxStatus, Message
from api.cursors import MessageCursor
from api.db import is_transient, read_only, unit_of_work
from api.errors import DatabaseBusy, InvalidInput, NotFound, RateLimited, Unauthorized
from api.handoffs import waiting
from api.handoffs.hours import staff_hours
from api.net import client_address
from api.relay import service as relay
from api.relay.schemas import RelayState
from api.relay.stream import events, resume_cursor, sse_response
from api.state import AppState, app_state

log = logging.getLogger("concierge.webchat")

router = APIRouter(tags=["webchat"])
STATIC = Path(__file__).resolve().parent / "static"
SESSION_HEADER = "X-Chat-Session"
STREAM_COOKIE = "concierge_chat"
STREAM_COOKIE_MAX_AGE = 30 * 24 * 3600
SessionHeader = Annotated[str | None, Header(alias=SESSION_HEADER, max_length=128)]


def stream_url(conversation_id: str) -> str:
    return f"/api/webchat/streams/{conversation_id}"


def _give_stream_cookie(response: Response, state: AppState, conversation_id: str, token: str) -> None:
    response.set_cookie(STREAM_COOKIE, token, path=stream_url(conversation_id), max_age=STREAM_COOKIE_MAX_AGE,
                        httponly=True, samesite="strict", secure=state.settings.cookies_secure)


def _token(header: str | None) -> str:
    if not header:
        raise Unauthorized(f"send the chat session in the {SESSION_HEADER} header")
    return header


# (what, per-minute setting, burst). Checked before the body is read or the database asked, so a
# flood costs a dictionary (or Redis) lookup per request, not a turn.
async def _limit(request: Request, *checks: tuple[str, float, int]) -> None:
    state = app_state(request)
    if not state.settings.rate_limits:
        return
    for key, per_minute, burst in checks:
        wait = await state.limiter.hit(key, per_minute, burst)
        if wait > 0:
            what = key.split(":", 1)[0]
            raise RateLimited(_LIMIT_MESSAGES.get(what, "Too many requests; please wait a moment."), retry_after=wait)


_LIMIT_MESSAGES = {
    "sessions": "Too many new chats from here; please wait a moment and try again.",
    "messages": "You are sending messages faster than we can read them: this one was not sent. Please wait a "
                "moment and send it again.",
    "client": "Too many messages from this network right now; please wait a moment and try again.",
    "reads": "Too many requests for this chat; please wait a moment.",
}


def _client(request: Request) -> str:
    return client_address(request, app_state(request).trusted_proxies) or "unknown"


def _session_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]  # never the secret itself, not even in Redis


async def _limit_message(request: Request, token: str) -> None:
    s = app_state(request).settings
    await _limit(request, (f"messages:{_session_key(token)}", s.rate_messages_per_min, 10),
                 (f"client:{_client(request)}", s.rate_client_messages_per_min, 40))


async def _limit_read(request: Request, token: str) -> None:
    await _limit(request, (f"reads:{_session_key(token)}", app_state(request).settings.rate_reads_per_min, 60))


def to_read(m: Message) -> MessageRead:
    return MessageRead(
        id=m.id, text=m.body, direction=m.direction, sender=m.sender_type, sender_label=m.sender_label,
        content_id=m.content_id,
        content_version=m.content_version, approval_code=m.approval_code,
        buttons=[ButtonRead(title=b["title"], payload=b["payload"]) for b in (m.buttons or [])],
        created_at=m.created_at.isoformat(),
    )


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.post("/api/webchat/sessions", status_code=201)
async def create_session(request: Request, response: Response) -> SessionRead:
    state = app_state(request)
    await _limit(request, (f"sessions:{_client(request)}", state.settings.rate_sessions_per_min, 10))

    def create() -> tuple[str, str]:
        with unit_of_work(state.session_factory) as session:
            conv, token = conversations.create_webchat(session, now=state.clock.now(),
                                                       market=state.settings.default_market)
            return conv.id, token

    conv_id, token = await run_in_threadpool(create)
    _give_stream_cookie(response, state, conv_id, token)
    return SessionRead(session_id=token, stream_url=stream_url(conv_id))


@router.post("/api/webchat/session/stream")
async def renew_stream_cookie(request: Request, response: Response, session: SessionHeader = None) -> SessionRead:
    """The stream cookie again, for a session the page restored from its storage."""
    state = app_state(request)
    token = _token(session)

    def find() -> str:
        with read_only(state.engine) as db:
            return conversations.get_by_session_token(db, token).id

    conv_id = await run_in_threadpool(find)
    _give_stream_cookie(response, state, conv_id, token)
    return SessionRead(session_id=token, stream_url=stream_url(conv_id))


async def _parse_message(request: Request, limit: int) -> MessageCreate:
    raw = await request.body()
    # A generous envelope for JSON escaping; the text itself is checked below.
    if len(raw) > limit * 6 + 1024:
        raise InvalidInput(f"message too large (max {limit} characters)", detail={"max_chars": limit})
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("request body is not valid UTF-8") from exc
    try:
        data = json.loads(decoded)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise InvalidInput('request body must be a JSON object like {"text": "..."}')
    try:
        body = MessageCreate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{where}: {first['msg']}") from exc
    if not body.text.strip():
        raise InvalidInput("text: message is empty")
    if len(body.text) > limit:
        raise InvalidInput(f"text: message too long ({len(body.text)} > {limit} characters)",
                           detail={"max_chars": limit})
    if "\x00" in body.text:
        raise InvalidInput("text: contains a NUL character")
    return body


def client_message_key(conversation_id: str, client_message_id: str) -> str:
    """The stored idempotency key of a web chat message: the page's id, scoped to its conversation
    (two sessions that both send id "1" are two messages). Fits ``message.channel_message_id``."""
    digest = hashlib.sha256(f"{conversation_id}\x00{client_message_id}".encode()).hexdigest()
    return f"wc:{digest[:61]}"


class _ScreenOnReceiptFailed(Exception):
    """The safety screen failed in the transaction storing the message (the cause is chained)."""


async def _post(request: Request, session_id: str) -> TurnRead:
    state = app_state(request)
    body = await _parse_message(request, state.settings.max_message_chars)

    processor = state.worker.processor

    # (conversation, message, inbox status, and — screened on receipt and kept for this process's worker —
    # (inbox id, whether the lease was taken))
    def store(screen: bool) -> tuple[str, int, str, tuple[str, bool] | None]:
        with unit_of_work(state.session_factory) as session:
            # Locked as it is read: messages of one conversation get ids in commit order (persist_inbound).
            conv = conversations.get_by_session_token(session, session_id, for_update=True)
            key = None if body.client_message_id is None else client_message_key(conv.id, body.client_message_id)
            now = state.clock.now()
            stored = conversations.persist_inbound(
                session, conv, text=body.text, payload=body.payload, now=now,
                channel_message_id=key, conflict_if_different=True, conversation_locked=True,
                id_scoped_to_conversation=True)
            screened = None
            if screen and not stored.duplicate:
                # Nothing else of the conversation pending: its safety screen (step 1 of the turn) runs
                # in this transaction instead of one of its own (TurnProcessor.screen_on_receipt).
                try:
                    screened = processor.screen_on_receipt(session, stored.inbox, stored.message, conv, now)
                except Exception as exc:
                    raise _ScreenOnReceiptFailed from exc
            ids = (conv.id, stored.message.id, stored.inbox.status)
            inbox_id = stored.inbox.id
        hint = None
        if screened is not None and processor.prescreened(inbox_id, screened):  # committed with the message
            hint = (inbox_id, screened.leased)
        return (*ids, hint)

    def persist() -> tuple[str, int, str, tuple[str, bool] | None]:
        try:
            return store(screen=True)
        except _ScreenOnReceiptFailed as failed:
            # The storing transaction rolled back as a whole: store the message on its own; its turn's
            # step 1 screens it (retrying a busy database; setting the message aside, kept, if it fails).
            cause = failed.__cause__ or failed
            log.warning("screening on receipt failed (%s); the message is stored and its turn screens it",
                        type(cause).__name__, exc_info=not is_transient(cause))
            return store(screen=False)

    # The whole request is bounded by the turn's deadline plus a margin: storing the message (which
    # waits for the database: a lock, a busy SQLite file) and then waiting for its replies share it.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.settings.rasa_timeout + state.settings.reply_wait_margin_s
    try:
        # abandon_on_cancel: the wait ends at the deadline even while the thread still waits on a lock
        # (run_in_threadpool would hold the request until the thread returned).
        conv_id, message_id, status, prescreened = await asyncio.wait_for(
            anyio.to_thread.run_sync(persist, abandon_on_cancel=True), timeout=deadline - loop.time())
    except TimeoutError:
        # Not stored in time (it may still be, a moment later: a retry with the same
        # client_message_id then gets that message's replies, never a second copy).
        raise DatabaseBusy("We could not store your message in time; please send it again.") from None
    pending = False
    if status == InboxStatus.pending:  # a retried client_message_id gets the replies of the first delivery
        # A turn still running at the deadline (the database is back from an outage, say) answers on
        # the message stream instead.
        wait = max(0.0, deadline - loop.time())
        result = await state.worker.submit(conv_id, message_id, timeout=wait,
                                           only_pending=None if prescreened is None else prescreened[0],
                                           leased=prescreened is not None and prescreened[1])
        pending = result is None
        if result is not None and result.page is not None:
            # The turn's last step committed these: no need to read them back.
            return TurnRead(messages=[to_read(m) for m in result.page.replies if m.status in _VISIBLE],
                            waiting=_waiting_read(result.page.waiting))

    def load() -> tuple[list[MessageRead], WaitingRead | None]:
        with read_only(state.engine) as session:
            replies = [to_read(m) for m in conversations.replies_to(session, message_id) if m.status in _VISIBLE]
            return replies, _waiting(session, conversations.get_by_session_token(session, session_id), state)

    try:
        replies, waiting_for = await asyncio.wait_for(anyio.to_thread.run_sync(load, abandon_on_cancel=True),
                                                      timeout=max(0.5, deadline - loop.time()) + 1.0)
    except Exception as exc:
        if not (isinstance(exc, TimeoutError) or is_transient(exc)):
            raise
        # The message is stored (acknowledged); only reading its replies failed: they follow.
        return TurnRead(messages=[], pending=True)
    return TurnRead(messages=replies, pending=pending, waiting=waiting_for)


# A reply the page shows: delivered to it (a reply gated at send never is).
_VISIBLE = frozenset({"sent", "delivered", "read"})


def _waiting(session: Session, conv: Conversation, state: AppState) -> WaitingRead | None:
    return _waiting_read(waiting.waiting_for(session, conv, staff_hours(state.settings)))


def _waiting_read(found: waiting.Waiting | None) -> WaitingRead | None:
    return None if found is None else WaitingRead(**dataclasses.asdict(found))


async def _list(request: Request, session_id: str, after: int) -> TurnRead:
    state = app_state(request)

    def load() -> TurnRead:
        with read_only(state.engine) as session:
            conv = conversations.get_by_session_token(session, session_id)
            return TurnRead(messages=[to_read(m) for m in conversations.list_after(session, conv, after)],
                            waiting=_waiting(session, conv, state))

    return await run_in_threadpool(load)


async def _events(request: Request, conv_id: str, session_id: str, after: int) -> StreamingResponse:
    state = app_state(request)
    live = state.live_relay()
    cursor = resume_cursor(request, after)

    def load(after_id: int) -> relay.Batch | None:
        with live.read_sessions() as session:
            try:
                return relay.hcp_batch(session, session_id, after_id)
            except NotFound:
                return None

    async def read(after_id: int) -> relay.Batch | None:
        return await live.run(load, after_id)

    def peek() -> tuple[int, RelayState] | None:
        with live.read_sessions() as session:
            return relay.probe(session, conv_id)

    async def probe() -> tuple[int, RelayState] | None:
        return await live.run(peek)

    return sse_response(events(live, conv_id, cursor, read, probe=probe))


@router.post("/api/webchat/messages")
async def post_message(request: Request, session: SessionHeader = None) -> TurnRead:
    token = _token(session)
    await _limit_message(request, token)
    return await _post(request, token)


@router.get("/api/webchat/messages")
async def list_messages(request: Request, after: MessageCursor = 0, session: SessionHeader = None) -> TurnRead:
    token = _token(session)
    await _limit_read(request, token)
    return await _list(request, token, after)


@router.get("/api/webchat/streams/{conversation_id}/events")
async def message_events(request: Request, conversation_id: str, after: MessageCursor = 0) -> StreamingResponse:
    state = app_state(request)
    token = request.cookies.get(STREAM_COOKIE)
    if not token:
        raise Unauthorized("no chat session for this stream (start or restore the chat first)")
    await _limit_read(request, token)

    def owner() -> str:
        with state.live_relay().read_sessions() as session:
            conv: Conversation = conversations.get_by_session_token(session, token)
            return conv.id

    if await run_in_threadpool(owner) != conversation_id:  # another session's cookie: nothing to see here
        raise NotFound("unknown chat session")
    return await _events(request, conversation_id, token, after)


# -- deprecated: the secret in the path (kept for a deprecation window; redacted in access logs) --

@router.post("/api/webchat/sessions/{session_id}/messages", deprecated=True)
async def post_message_by_path(session_id: str, request: Request) -> TurnRead:
    await _limit_message(request, session_id)
    return await _post(request, session_id)


@router.get("/api/webchat/sessions/{session_id}/messages", deprecated=True)
async def list_messages_by_path(session_id: str, request: Request, after: MessageCursor = 0) -> TurnRead:
    await _limit_read(request, session_id)
    return await _list(request, session_id, after)


@router.get("/api/webchat/sessions/{session_id}/events", deprecated=True)
async def message_events_by_path(session_id: str, request: Request, after: MessageCursor = 0) -> StreamingResponse:
    await _limit_read(request, session_id)
    live = app_state(request).live_relay()

    def conversation_id() -> str:
        with live.read_sessions() as session:
            return conversations.get_by_session_token(session, session_id).id

    conv_id = await run_in_threadpool(conversation_id)  # unknown session: 404 before any byte
    return await _events(request, conv_id, session_id, after)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
