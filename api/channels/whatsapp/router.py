"""Twilio webhooks: incoming WhatsApp messages and delivery-status callbacks.

Every request is checked against ``X-Twilio-Signature``, computed over the *configured* public
URL (``CONCIERGE_PUBLIC_URL`` + path + query) — never the URL a proxy rewrote — before anything
is stored. A valid message is persisted as it came (one INSERT, ``ingest.store_raw``),
acknowledged with empty TwiML, and ingested and processed by the worker afterwards
(``ingest.Ingester``); Twilio waits for nothing else — not the conversation, the audit chain, the
safety screen or Rasa.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlparse

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from twilio.request_validator import RequestValidator, add_port, remove_port

from api import sqlite_writes as writes
from api.channels.whatsapp import ingest
from api.channels.whatsapp import service as wa
from api.db import unit_of_work
from api.errors import Forbidden, InvalidInput
from api.state import app_state

router = APIRouter(tags=["whatsapp"])

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_BODY_BYTES = 64 * 1024  # Twilio's own bodies are a few KB; anything bigger is not Twilio
MAX_FIELDS = 200


class FormParams(dict[str, str]):
    """Form fields with every value kept, for signing (Twilio signs repeated keys too)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self.pairs = pairs
        for k, v in pairs:
            self.setdefault(k, v)

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k == key]


def signed_url(public_url: str, path: str, query: str) -> str:
    """The URL Twilio was configured with: our public base, the route's path and the query as sent."""
    url = public_url.rstrip("/") + path
    return f"{url}?{query}" if query else url


def signature_valid(auth_token: str, url: str, params: FormParams, signature: str) -> bool:
    """Twilio's algorithm (URL with and without the default port), compared in constant time."""
    if not auth_token or not signature:
        return False
    validator = RequestValidator(auth_token)
    try:
        parsed = urlparse(url)
        candidates = sorted({add_port(parsed), remove_port(parsed)})
    except ValueError:
        return False
    ok = False
    for candidate in candidates:
        expected = validator.compute_signature(candidate, params)
        ok |= hmac.compare_digest(expected.encode(), signature.encode())
    return ok


async def verified_form(request: Request, path: str) -> FormParams:
    """Parse a Twilio form post and verify its signature; raises before anything is stored."""
    state = app_state(request)
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise InvalidInput("request body too large", detail={"max_bytes": MAX_BODY_BYTES})
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidInput("request body too large", detail={"max_bytes": MAX_BODY_BYTES})
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidInput("expected a form-encoded Twilio webhook")
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict",
                          max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("request body is not a valid UTF-8 form") from exc
    params = FormParams(pairs)
    signature = request.headers.get("x-twilio-signature", "")
    url = signed_url(state.settings.public_url, path, request.url.query)
    if not signature_valid(state.settings.twilio_auth_token, url, params, signature):
        raise Forbidden("invalid or missing Twilio signature")
    return params


def twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="application/xml")


INBOUND_PATH = "/webhooks/twilio/whatsapp"
STATUS_PATH = "/webhooks/twilio/status"


@router.post(INBOUND_PATH, include_in_schema=False)
async def incoming(request: Request) -> Response:
    state = app_state(request)
    params = await verified_form(request, INBOUND_PATH)
    form = wa.InboundForm.parse(params)

    def persist() -> bool:
        # Twilio waits for this answer: one INSERT, ahead of turn and outbox work on SQLite.
        intake = ingest.intake_sessions(state.engine, state.session_factory)
        with writes.priority(), unit_of_work(intake) as session:
            return ingest.store_raw(session, form, params.pairs, now=state.clock.now())

    stored = await run_in_threadpool(persist)
    ingester = state.whatsapp_ingester
    if stored and ingester is not None:
        ingester.kick()  # inline mode; the worker process polls
    return twiml()


@router.post(STATUS_PATH, include_in_schema=False)
async def status_callback(request: Request) -> Response:
    state = app_state(request)
    params = await verified_form(request, STATUS_PATH)
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    if not sid or not status:
        raise InvalidInput("MessageSid and MessageStatus are required")
    error_code = params.get("ErrorCode") or None

    def apply() -> bool:
        with writes.priority(), unit_of_work(state.session_factory) as session:
            return wa.apply_status(session, sid=sid, twilio_status=status, error_code=error_code,
                                   now=state.clock.now())

    await run_in_threadpool(apply)
    return twiml()
