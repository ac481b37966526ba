"""The WhatsApp sandbox: try the whole WhatsApp path in a browser, without a Twilio account.

``concierge run --whatsapp-sandbox`` (or ``CONCIERGE_WHATSAPP_SANDBOX=1``) serves, on loopback,
the fake Twilio API (``fake_twilio``) and in front of it a page that plays a phone. The path a
message takes is the production one, only Twilio is simulated:

    phone page ──POST /sandbox/api/messages──> sandbox (plays Twilio)
        ──signed POST /webhooks/twilio/whatsapp──> api: verify → persist → ack → worker → Rasa
        → reply → outbox → dispatcher ──POST …/Messages.json (basic auth)──> fake Twilio
        ──> the phone page (it polls) ;  fake Twilio ──signed status callbacks──> api

The api is configured exactly as for Twilio (account SID, auth token, API URL, sender number);
the sandbox's auth token is random for every run, so a sandbox left running cannot be used to
forge webhooks for another one. The page renders every message as text (``textContent``), and
its API accepts only JSON bodies, so another web page cannot post through it (a cross-origin
JSON post needs a CORS pre-flight, which the sandbox never grants).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.channels.whatsapp.fake_twilio import ACCOUNT_SID, WHATSAPP_FROM, FakeTwilio, SentRecord, TwilioSigner
from api.settings import Settings
from api.threaded_server import ThreadedServer

STATIC = Path(__file__).resolve().parent / "sandbox_static"
INBOUND_PATH = "/webhooks/twilio/whatsapp"
NUMBER = re.compile(r"^whatsapp:\+[1-9]\d{6,14}$")
MAX_BODY_CHARS = 4096
WEBHOOK_TIMEOUT = 15.0  # Twilio gives up on a webhook after 15 s
STATUS_STEPS = (("sent", 0.4), ("delivered", 0.4))  # status callbacks after a message is accepted

_M = TypeVar("_M", bound=BaseModel)


class PhoneMessage(BaseModel):
    """What the phone page sends: a text, a location or a photo, from one WhatsApp number."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", min_length=11, max_length=25)
    body: str = Field(default="", max_length=MAX_BODY_CHARS)
    kind: Literal["text", "location", "photo"] = "text"
    forge: bool = False  # sign with the wrong token: the api must answer 403 and store nothing


@dataclass
class PhoneEvent:
    """One bubble on the phone: sent by the phone (``direction="phone"``) or by the business."""

    id: int
    number: str
    direction: Literal["phone", "business"]
    body: str
    kind: str
    at: str
    status: str  # phone: sending | accepted | rejected; business: received | read
    detail: str = ""
    ack_ms: float | None = None
    sid: str = ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", ""))[:200]
    return response.text[:200]


class PhoneSandbox:
    """The fake Twilio plus the simulated phone, served by one loopback server.

    ``webhook_base`` is where the api listens (the sandbox posts there, like a proxy would);
    ``public_url`` is what the api believes Twilio was configured with, and what the sandbox
    signs — the same split as production behind a load balancer.
    """

    def __init__(self, *, webhook_base: str, public_url: str, auth_token: str | None = None,
                 account_sid: str = ACCOUNT_SID, whatsapp_from: str = WHATSAPP_FROM,
                 status_callbacks: bool = True) -> None:
        self.fake = FakeTwilio(account_sid=account_sid, auth_token=auth_token or secrets.token_hex(16),
                               hang_seconds=WEBHOOK_TIMEOUT)
        self.whatsapp_from = whatsapp_from
        self.webhook_base = webhook_base.rstrip("/")
        self.signer = TwilioSigner(public_url, auth_token=self.fake.auth_token, account_sid=account_sid)
        self.status_callbacks = status_callbacks
        self.url = ""
        self._events: list[PhoneEvent] = []
        self._by_sid: dict[str, PhoneEvent] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: ThreadedServer | None = None
        self.fake.listeners.append(self._on_sent)

    # -- wiring ---------------------------------------------------------------------------------
    def configure(self, settings: Settings) -> Settings:
        """The api's settings with Twilio pointed at this sandbox (call after ``start``)."""
        if not self.url:
            raise RuntimeError("start the sandbox before configuring the api for it")
        return settings.model_copy(update={
            "twilio_account_sid": self.fake.account_sid, "twilio_auth_token": self.fake.auth_token,
            "twilio_api_url": self.url, "twilio_whatsapp_from": self.whatsapp_from,
        })

    def events(self, number: str, after: int = 0) -> list[PhoneEvent]:
        with self._lock:
            return [e for e in self._events if e.number == number and e.id > after]

    def _add(self, number: str, direction: Literal["phone", "business"], body: str, kind: str, status: str,
             sid: str = "") -> PhoneEvent:
        with self._lock:
            event = PhoneEvent(id=next(self._seq), number=number, direction=direction, body=body, kind=kind,
                               at=_now(), status=status, sid=sid)
            self._events.append(event)
            if sid:
                self._by_sid[sid] = event
            return event

    # -- business → phone -----------------------------------------------------------------------
    def _on_sent(self, record: SentRecord) -> None:
        """The api sent a message through the fake: show it on the phone, report its progress."""
        if record.body is not None:
            body, kind = record.body, "text"
        else:
            body = f"[approved template {record.content_sid}] {record.content_variables or ''}".strip()
            kind = "template"
        self._add(record.to, "business", body, kind, "received", sid=record.sid)
        if self.status_callbacks and record.status_callback:
            self._spawn(self._report(record.sid, record.status_callback, STATUS_STEPS))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, sid: str, callback: str, steps: tuple[tuple[str, float], ...]) -> None:
        """Signed status callbacks, as Twilio sends them (to the URL the api gave, via our base)."""
        parts = urlsplit(callback)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        signer = TwilioSigner(f"{parts.scheme}://{parts.netloc}", auth_token=self.fake.auth_token,
                              account_sid=self.fake.account_sid)
        for status, delay in steps:
            await asyncio.sleep(delay)
            req = signer.request(parts.path, signer.status(sid, status), query=parts.query)
            try:
                assert self._client is not None
                await self._client.post(self.webhook_base + path, content=req.body, headers=req.headers)
            except httpx.HTTPError:
                return  # Twilio does not retry status callbacks either

    def mark_read(self, number: str, up_to: int) -> int:
        """The phone displayed these messages: report them ``read`` (as WhatsApp's blue ticks do)."""
        with self._lock:
            fresh = [e for e in self._events if e.number == number and e.direction == "business"
                     and e.id <= up_to and e.status == "received"]
            for e in fresh:
                e.status = "read"
        if self.status_callbacks:
            for e in fresh:
                record = next((r for r in self.fake.sent if r.sid == e.sid), None)
                if record is not None and record.status_callback:
                    self._spawn(self._report(e.sid, record.status_callback, (("read", 0.0),)))
        return len(fresh)

    # -- phone → business -----------------------------------------------------------------------
    async def send_from_phone(self, msg: PhoneMessage) -> PhoneEvent:
        """Deliver what the phone typed to the api's webhook, signed like Twilio (or forged)."""
        extra: dict[str, str] = {}
        body = msg.body
        if msg.kind == "location":
            extra = {"Latitude": "51.5033", "Longitude": "-0.1196", "Address": "Westminster, London",
                     "Label": "Clinic"}
            shown = "[Location: Clinic, Westminster, London]"
        elif msg.kind == "photo":
            extra = {"NumMedia": "1", "MediaUrl0": f"{self.url}/sandbox/media/photo.png",
                     "MediaContentType0": "image/png"}
            shown = "[Photo]" + (f"\n{body}" if body else "")
        else:
            shown = body
        params = self.signer.inbound(msg.from_, body, ProfileName="Sandbox HCP", **extra)
        signature = "forged-" + secrets.token_hex(8) if msg.forge else None
        req = self.signer.request(INBOUND_PATH, params, signature=signature)
        event = self._add(msg.from_, "phone", shown, msg.kind, "sending", sid=params["MessageSid"])
        started = time.perf_counter()
        try:
            assert self._client is not None
            response = await self._client.post(self.webhook_base + req.path_and_query, content=req.body,
                                                headers=req.headers)
        except httpx.HTTPError as exc:
            event.status, event.detail = "rejected", f"the api did not answer: {type(exc).__name__}"
            return event
        event.ack_ms = round((time.perf_counter() - started) * 1000, 1)
        if response.status_code == 200:
            event.status = "accepted"
        else:
            event.status = "rejected"
            event.detail = f"{response.status_code}: {_error_text(response)}"
        return event

    # -- the app --------------------------------------------------------------------------------
    def app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(_: FastAPI) -> Any:
            self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT)
            try:
                yield
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await self._client.aclose()

        app = FastAPI(title="WhatsApp sandbox (fake Twilio)", lifespan=lifespan, docs_url=None, redoc_url=None,
                      openapi_url=None)
        # The Twilio REST API the api's dispatcher calls, at Twilio's own paths.
        app.router.routes.extend(r for r in self.fake.app().router.routes
                                 if getattr(r, "path", "").startswith("/2010-04-01/"))

        @app.get("/", include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

        @app.get("/sandbox/static/{name}", include_in_schema=False)
        async def static(name: str) -> Response:
            if name not in {"phone.js", "phone.css"}:
                return JSONResponse({"error": {"code": "not_found", "message": "no such file"}}, status_code=404)
            return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

        @app.get("/sandbox/api/config")
        async def config() -> dict[str, str]:
            return {"business_number": self.whatsapp_from, "webhook": self.webhook_base + INBOUND_PATH,
                    "signed_for": self.signer.public_url + INBOUND_PATH}

        @app.post("/sandbox/api/messages")
        async def send(request: Request) -> JSONResponse:
            msg = await _json_body(request, PhoneMessage)
            if isinstance(msg, JSONResponse):
                return msg
            if not NUMBER.match(msg.from_):
                return _bad("from must be a WhatsApp number like whatsapp:+15551234567")
            if msg.kind == "text" and not msg.body.strip():
                return _bad("type a message first")
            if "\x00" in msg.body:
                return _bad("the message contains a NUL character")
            event = await self.send_from_phone(msg)
            return JSONResponse(asdict(event))

        @app.get("/sandbox/api/messages")
        async def listing(number: str, after: int = 0) -> JSONResponse:
            if not NUMBER.match(number):
                return _bad("number must be a WhatsApp number like whatsapp:+15551234567")
            return JSONResponse({"events": [asdict(e) for e in self.events(number, after)]})

        @app.post("/sandbox/api/read")
        async def read(request: Request) -> JSONResponse:
            ack = await _json_body(request, ReadAck)
            if isinstance(ack, JSONResponse):
                return ack
            if not NUMBER.match(ack.number):
                return _bad("number must be a WhatsApp number like whatsapp:+15551234567")
            return JSONResponse({"read": self.mark_read(ack.number, ack.up_to)})

        return app

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 20.0) -> str:
        """Serve on loopback in a background thread; returns the base URL."""
        self._server = ThreadedServer(self.app(), host=host, port=port, name="whatsapp-sandbox",
                                      label="the WhatsApp sandbox", access_log=False, lifespan="on")
        self.url = self._server.start(timeout).url
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=10)


class ReadAck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(max_length=25)
    up_to: int = Field(ge=0)


def _bad(message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"error": {"code": "invalid_input", "message": message}}, status_code=status)


async def _json_body(request: Request, model: type[_M]) -> _M | JSONResponse:
    """A JSON object of the given shape. Other content types are refused: a form or text/plain post
    from another web page (no CORS pre-flight) must not be able to drive the sandbox."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _bad("send JSON (application/json)", 415)
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _bad(f"{where}: {first['msg']}" if where else str(first["msg"]))


def loopback_url(host: str, port: int) -> str:
    """Where a process on this machine reaches a server bound to ``host``."""
    reach = "127.0.0.1" if host in ("", "0.0.0.0", "::", "localhost") else host
    return f"http://{reach}:{port}"
