"""Web chat channel: the JSON API the page (and tests, and benchmarks) use.

Live messages: ``GET /api/webchat/sessions/{session_id}/events?after=<id>`` is a server-sent event
stream (``event: message``, ``id: <message id>``) of the same messages the GET messages endpoint
lists, authenticated the same way (the secret session id); the page uses it through EventSource and
falls back to polling the messages endpoint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.channels.webchat.schemas import ButtonRead, MessageCreate, MessageRead, SessionRead, TurnRead
from api.conversations import service as conversations
from api.conversations.models import InboxStatus, Message
from api.db import is_transient, unit_of_work
from api.errors import InvalidInput, NotFound
from api.relay import service as relay
from api.relay.schemas import RelayState
from api.relay.stream import events, get_relay, resume_cursor, sse_response
from api.state import app_state

router = APIRouter(tags=["webchat"])
STATIC = Path(__file__).resolve().parent / "static"


def to_read(m: Message) -> MessageRead:
    return MessageRead(
        id=m.id, text=m.body, direction=m.direction, sender=m.sender_type, content_id=m.content_id,
        content_version=m.content_version, approval_code=m.approval_code,
        buttons=[ButtonRead(title=b["title"], payload=b["payload"]) for b in (m.buttons or [])],
        created_at=m.created_at.isoformat(),
    )


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.post("/api/webchat/sessions", status_code=201)
async def create_session(request: Request) -> SessionRead:
    state = app_state(request)

    def create() -> str:
        with unit_of_work(state.session_factory) as session:
            _, token = conversations.create_webchat(session, now=state.clock.now(),
                                                    market=state.settings.default_market)
            return token

    return SessionRead(session_id=await run_in_threadpool(create))


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


@router.post("/api/webchat/sessions/{session_id}/messages")
async def post_message(session_id: str, request: Request) -> TurnRead:
    state = app_state(request)
    body = await _parse_message(request, state.settings.max_message_chars)

    def persist() -> tuple[str, int, str]:
        with unit_of_work(state.session_factory) as session:
            conv = conversations.get_by_session_token(session, session_id)
            key = None if body.client_message_id is None else client_message_key(conv.id, body.client_message_id)
            stored = conversations.persist_inbound(
                session, conv, text=body.text, payload=body.payload, now=state.clock.now(),
                channel_message_id=key, conflict_if_different=True)
            return conv.id, stored.message.id, stored.inbox.status

    conv_id, message_id, status = await run_in_threadpool(persist)
    pending = False
    if status == InboxStatus.pending:  # a retried client_message_id gets the replies of the first delivery
        # Bounded: the turn's own deadline plus a margin. A turn still running after that (the
        # database is back from an outage, say) answers on the message stream instead.
        wait = state.settings.rasa_timeout + state.settings.reply_wait_margin_s
        pending = await state.worker.submit(conv_id, message_id, timeout=wait) is None

    def load() -> list[MessageRead]:
        with state.session_factory() as session:
            return [to_read(m) for m in conversations.replies_to(session, message_id)
                    if m.status in ("sent", "delivered", "read")]

    try:
        replies = await run_in_threadpool(load)
    except Exception as exc:
        if not is_transient(exc):
            raise
        # The message is stored (acknowledged); only reading its replies failed: they follow.
        return TurnRead(messages=[], pending=True)
    return TurnRead(messages=replies, pending=pending)


@router.get("/api/webchat/sessions/{session_id}/messages")
async def list_messages(
    session_id: str, request: Request, after: Annotated[int, Query(ge=0)] = 0
) -> TurnRead:
    state = app_state(request)

    def load() -> list[MessageRead]:
        with state.session_factory() as session:
            conv = conversations.get_by_session_token(session, session_id)
            return [to_read(m) for m in conversations.list_after(session, conv, after)]

    return TurnRead(messages=await run_in_threadpool(load))


@router.get("/api/webchat/sessions/{session_id}/events")
async def message_events(
    session_id: str, request: Request, after: Annotated[int, Query(ge=0)] = 0
) -> StreamingResponse:
    state = app_state(request)
    live = get_relay(state)
    cursor = resume_cursor(request, after)

    def conversation_id() -> str:
        with live.read_sessions() as session:
            return conversations.get_by_session_token(session, session_id).id

    conv_id = await run_in_threadpool(conversation_id)  # unknown session: 404 before any byte

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


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
