"""A fake Twilio Messaging API for tests, benchmarks and the WhatsApp sandbox, served on loopback.

It speaks the part of Twilio's REST API the dispatcher uses (create and list messages under
``/2010-04-01/Accounts/{sid}/Messages.json``, basic auth, Twilio-shaped JSON), records every
message it accepted, and fails on demand: the next K calls, or a seeded fraction of them, with a
429, a 500 or a timeout. A timeout is the nasty kind — the message *is* recorded, the answer
never comes — which is what makes the dispatcher's "look it up before resending" necessary.

``TwilioSigner`` builds what Twilio would send to *our* webhooks: correctly signed requests
(and forged ones) for incoming messages and status callbacks.

It ships with the api (not only in ``tests/``) because ``concierge run --whatsapp-sandbox``
serves it, with a simulated phone in front (``api.channels.whatsapp.sandbox``). Nothing here is
used by the product's own request path; the api reaches it only through
``CONCIERGE_TWILIO_API_URL``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"
WHATSAPP_FROM = "whatsapp:+14155238886"


@dataclass
class SentRecord:
    sid: str
    to: str
    from_: str
    body: str | None
    content_sid: str | None
    content_variables: str | None
    status_callback: str | None
    created: datetime


@dataclass
class FakeTwilio:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    hang_seconds: float = 2.0
    sent: list[SentRecord] = field(default_factory=list)
    calls: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    _fail_next: list[str] = field(default_factory=list)
    _fail_ratio: float = 0.0
    _fail_kinds: tuple[str, ...] = ("429", "500", "timeout")
    _rng: random.Random = field(default_factory=lambda: random.Random(7))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Called (on the fake's event loop) with every message it accepted, e.g. the sandbox phone.
    listeners: list[Callable[[SentRecord], None]] = field(default_factory=list)

    # -- fault injection -------------------------------------------------------------------------
    def fail_next(self, count: int, kind: str = "500") -> None:
        with self._lock:
            self._fail_next.extend([kind] * count)

    def fail_ratio(self, ratio: float, *, seed: int = 7, kinds: tuple[str, ...] = ("429", "500", "timeout")) -> None:
        with self._lock:
            self._fail_ratio = ratio
            self._fail_kinds = kinds
            self._rng = random.Random(seed)

    def heal(self) -> None:
        with self._lock:
            self._fail_next.clear()
            self._fail_ratio = 0.0

    def _fault(self) -> str | None:
        with self._lock:
            self.calls += 1
            if self._fail_next:
                kind = self._fail_next.pop(0)
            elif self._fail_ratio and self._rng.random() < self._fail_ratio:
                kind = self._rng.choice(self._fail_kinds)
            else:
                return None
            self.failures[kind] = self.failures.get(kind, 0) + 1
            return kind

    def bodies_to(self, to: str) -> list[str | None]:
        return [m.body for m in self.sent if m.to == to]

    # -- the app ---------------------------------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def _json(self, m: SentRecord) -> dict[str, Any]:
        return {"sid": m.sid, "account_sid": self.account_sid, "to": m.to, "from": m.from_, "body": m.body,
                "status": "queued", "date_created": format_datetime(m.created, usegmt=True),
                "num_segments": "1", "error_code": None, "error_message": None}

    def app(self) -> FastAPI:
        app = FastAPI()
        base = "/2010-04-01/Accounts/{account}/Messages.json"

        @app.post(base)
        async def create(account: str, request: Request) -> Response:
            if account != self.account_sid or not self._authorised(request):
                return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
            form = await request.form()
            fault = self._fault()
            if fault == "429":
                return JSONResponse({"code": 20429, "message": "Too Many Requests", "status": 429},
                                    status_code=429, headers={"Retry-After": "0"})
            if fault == "500":
                return JSONResponse({"code": 20500, "message": "Internal Server Error", "status": 500},
                                    status_code=500)
            to, from_ = str(form.get("To", "")), str(form.get("From", ""))
            if not to.startswith("whatsapp:") or not from_.startswith("whatsapp:"):
                return JSONResponse({"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400},
                                    status_code=400)
            body = form.get("Body")
            content_sid = form.get("ContentSid")
            if body is None and content_sid is None:
                return JSONResponse({"code": 21619, "message": "A text message body or media url is required",
                                     "status": 400}, status_code=400)
            record = SentRecord(
                sid=f"SM{uuid.uuid4().hex}", to=to, from_=from_,
                body=str(body) if body is not None else None,
                content_sid=str(content_sid) if content_sid is not None else None,
                content_variables=str(form["ContentVariables"]) if "ContentVariables" in form else None,
                status_callback=str(form["StatusCallback"]) if "StatusCallback" in form else None,
                created=datetime.now(UTC),
            )
            with self._lock:
                self.sent.append(record)
            for listener in self.listeners:
                listener(record)
            if fault == "timeout":
                await asyncio.sleep(self.hang_seconds)  # accepted, but the caller never hears so
            return JSONResponse(self._json(record), status_code=201)

        @app.get(base)
        async def listing(account: str, request: Request) -> Response:
            if account != self.account_sid or not self._authorised(request):
                return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
            q = request.query_params
            after = q.get("DateSent>")
            with self._lock:
                rows = list(self.sent)
            out = [self._json(m) for m in reversed(rows)
                   if (not q.get("To") or m.to == q["To"]) and (not q.get("From") or m.from_ == q["From"])
                   and (not after or m.created.date().isoformat() >= after)]
            return JSONResponse({"messages": out[: int(q.get("PageSize", "50"))]})

        return app


# -- requests Twilio would send to us ---------------------------------------------------------------

@dataclass
class SignedRequest:
    path_and_query: str
    body: bytes
    headers: dict[str, str]


class TwilioSigner:
    """Builds Twilio webhook requests for our api, signed for ``public_url``."""

    def __init__(self, public_url: str, auth_token: str = AUTH_TOKEN, account_sid: str = ACCOUNT_SID) -> None:
        self.public_url = public_url.rstrip("/")
        self.account_sid = account_sid
        self.validator = RequestValidator(auth_token)
        self._seq = itertools.count(1)

    def next_sid(self) -> str:
        return f"SM{next(self._seq):08d}{random.getrandbits(64):024x}"

    def sign(self, url: str, params: dict[str, str]) -> str:
        return str(self.validator.compute_signature(url, params))

    def request(self, path: str, params: dict[str, str], *, query: str = "", signed_base: str | None = None,
                signature: str | None = None) -> SignedRequest:
        base = (signed_base or self.public_url).rstrip("/")
        url = base + path + (f"?{query}" if query else "")
        sig = self.sign(url, params) if signature is None else signature
        headers = {"content-type": "application/x-www-form-urlencoded"}
        if sig:
            headers["x-twilio-signature"] = sig
        return SignedRequest(path + (f"?{query}" if query else ""), urlencode(params).encode(), headers)

    def inbound(self, from_: str, body: str, *, sid: str | None = None, to: str = WHATSAPP_FROM,
                **extra: str) -> dict[str, str]:
        params = {"MessageSid": sid or self.next_sid(), "SmsMessageSid": "", "AccountSid": self.account_sid,
                  "From": from_, "To": to, "Body": body, "NumMedia": "0", "ProfileName": "Dr Test",
                  "WaId": from_.removeprefix("whatsapp:+")}
        params["SmsMessageSid"] = params["MessageSid"]
        params.update(extra)
        return params

    def status(self, sid: str, status: str, *, error_code: str | None = None) -> dict[str, str]:
        params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
                  "AccountSid": self.account_sid, "ChannelPrefix": "whatsapp"}
        if error_code:
            params["ErrorCode"] = error_code
        return params
