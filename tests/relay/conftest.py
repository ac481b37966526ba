"""Relay fixtures: the real api on loopback (uvicorn), an SSE reader, staff logins, handed-off chats.

Streams are read over real HTTP (httpx against uvicorn), not through TestClient: buffering,
disconnects and reconnects behave as they do for a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.clock import SystemClock
from api.conversations import service as conversations
from api.conversations.models import Conversation, ConversationState, Message
from api.db import unit_of_work
from api.handoffs import screening
from api.handoffs.models import Handoff, HandoffStatus
from api.handoffs.service import open_handoff
from api.relay.stream import Relay
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.settings import Settings
from api.staff import service as staff_service
from api.staff.auth import COOKIE
from tests.conftest import LiveServer, free_port
from tests.consoles.conftest import post_login
from tests.fakes.rasa import FakeRasa

PASSWORD = "correct horse battery staple"
REDIS_URL = "redis://127.0.0.1:6379/0"
CSRF_META = '<meta name="csrf-token" content="'


def scripted_screen(session: Session, conv: Conversation, msg: Message, now: datetime) -> Any:
    """The real persistence of screen findings (api.safety.service.apply) with a scripted verdict:
    ``CANARY-AE`` in a message is an adverse event, ``CANARY-MI`` an off-label question."""
    if "CANARY-AE" in msg.body:
        result = ScreenResult(adverse_event=True, ae_categories=("side_effect",), ae_score=0.99,
                              products=("cardiovex",), serious=True, serious_terms=("seizure",))
    elif "CANARY-MI" in msg.body:
        result = ScreenResult(off_label=True, products=("cardiovex",), off_label_reasons=("population",))
    else:
        result = ScreenResult()
    return apply(session, conversation=conv, message=msg, result=result, now=now)


# ------------------------------------------------------------------ servers


@dataclass
class Api:
    app: Any
    server: LiveServer
    url: str

    @property
    def relay(self) -> Relay:
        relay: Relay = self.app.state.concierge.relay
        return relay

    def stop(self) -> None:
        self.relay.request_shutdown()  # open streams end, so uvicorn's graceful stop does not wait
        self.server.stop()


@pytest.fixture()
def start_api(engine: Engine, settings: Settings) -> Iterator[Callable[..., Api]]:
    started: list[Api] = []

    def start(*, redis_url: str = "", poll_interval: float = 2.0, heartbeat: float = 15.0) -> Api:
        app = create_app(settings.model_copy(update={"redis_url": redis_url}), engine=engine,
                         safety_hook=scripted_screen, rasa_transport=FakeRasa().transport(), warm_knowledge=False)
        # Staff replies pass the staff reply screen, whose AE model the app warms at start only with
        # its own safety hook: warm it here so a first reply is not timed with the model's load.
        screening.screener_for(settings).warm_up()
        server = LiveServer(app, free_port()).start()
        api = Api(app=app, server=server, url=server.url)
        api.relay.config.poll_interval = poll_interval
        api.relay.config.heartbeat = heartbeat
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


# ------------------------------------------------------------------ server-sent events


@dataclass
class Event:
    event: str
    data: str
    id: str | None
    at: float

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseReader:
    """Reads one event stream in a thread of its own; ``wait_for`` blocks until a matching event."""

    url: str
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    body: bytes = b""
    raw: bytearray = field(default_factory=bytearray)
    events: list[Event] = field(default_factory=list)
    comments: int = 0
    ended: bool = False

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="sse-reader")
        self._thread.start()
        self._future = asyncio.run_coroutine_threadsafe(self._read(), self._loop)

    async def _read(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), cookies=self.cookies) as client:
                headers = {"accept": "text/event-stream", **self.headers}
                async with client.stream("GET", self.url, headers=headers) as resp:
                    with self._cond:
                        self.status = resp.status_code
                        self._cond.notify_all()
                    if resp.status_code != 200:
                        self.body = await resp.aread()
                        return
                    buffer = ""
                    async for chunk in resp.aiter_raw():
                        self.raw.extend(chunk)
                        buffer += chunk.decode()
                        while "\n\n" in buffer:
                            block, buffer = buffer.split("\n\n", 1)
                            self._parse(block)
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def _parse(self, block: str) -> None:
        name, data, event_id = "message", [], None
        for line in block.split("\n"):
            if line.startswith(":"):
                with self._cond:
                    self.comments += 1
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
            elif key == "id":
                event_id = value
        if data:
            with self._cond:
                self.events.append(Event(name, "\n".join(data), event_id, time.monotonic()))
                self._cond.notify_all()

    def wait_status(self, timeout: float = 10.0) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.status is not None or self.ended, timeout)
        assert self.status is not None, "no response"
        return self.status

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        with self._cond:
            found: list[Event] = []

            def check() -> bool:
                found[:] = [e for e in self.events if pred(e)]
                return bool(found) or self.ended

            self._cond.wait_for(check, timeout)
            if not found:
                got = [(e.event, e.data) for e in self.events]
                raise AssertionError(f"no matching event within {timeout}s; got {got}")
            return found[0]

    def messages(self) -> list[dict[str, Any]]:
        with self._cond:
            return [e.json() for e in self.events if e.event == "message"]

    def wait_ended(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.ended, timeout)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._future.cancel()
        with contextlib.suppress(BaseException):  # cancelled, or the stream had already failed
            self._future.result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


@pytest.fixture()
def sse() -> Iterator[Callable[..., SseReader]]:
    readers: list[SseReader] = []

    def open_(url: str, **kwargs: Any) -> SseReader:
        reader = SseReader(url, **kwargs)
        readers.append(reader)
        return reader

    yield open_
    for r in readers:
        r.close()


# ------------------------------------------------------------------ staff and conversations


@dataclass
class StaffLogin:
    id: str
    email: str
    cookies: dict[str, str]
    csrf: str


@pytest.fixture()
def factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions with no relay bus: like another process writing to the same database."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture()
def staff_login(factory: sessionmaker[Session]) -> Callable[..., StaffLogin]:
    def make(api: Api, *roles: str) -> StaffLogin:
        email = f"relay-{'-'.join(roles)}-{uuid.uuid4().hex[:10]}@halcyon.example"
        with unit_of_work(factory) as s:
            user = staff_service.create(s, email=email, password=PASSWORD, roles=list(roles), name=f"Relay {roles[0]}",
                                        territory=None, now=SystemClock().now())
            staff_id = user.id
        with httpx.Client(base_url=api.url, follow_redirects=False) as client:
            res = post_login(client, {"email": email, "password": PASSWORD, "next": "/console"})
            assert res.status_code == 303, res.text
            token = client.cookies.get(COOKIE)
            assert token
            home = client.get("/console").text
            csrf = home.split(CSRF_META, 1)[1].split('"', 1)[0]
        return StaffLogin(id=staff_id, email=email, cookies={COOKIE: token}, csrf=csrf)

    return make


@dataclass
class Chat:
    conversation_id: str
    token: str
    handoff_id: str | None


@pytest.fixture()
def chat(factory: sessionmaker[Session]) -> Callable[..., Chat]:
    """A web chat conversation, optionally handed off (queued, or claimed by ``claimed_by``)."""

    def make(*, handoff: bool = True, claimed_by: str | None = None, target: str = "rep") -> Chat:
        now = datetime.now(UTC)
        with unit_of_work(factory) as s:
            conv, token = conversations.create_webchat(s, now=now, market="US")
            handoff_id = None
            if handoff:
                h: Handoff = open_handoff(s, conv, target=target, reason="hcp_request", now=now)
                handoff_id = h.id
                if claimed_by is not None:
                    h.status = HandoffStatus.claimed
                    h.claimed_by = claimed_by
                    h.claimed_at = now
                    conv.state = ConversationState.human
                    conv.assigned_staff_id = claimed_by
            return Chat(conversation_id=conv.id, token=token, handoff_id=handoff_id)

    return make


def hcp_says(api: Api, chat: Chat, text: str) -> dict[str, Any]:
    res = httpx.post(f"{api.url}/api/webchat/sessions/{chat.token}/messages", json={"text": text}, timeout=30)
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return body


def staff_reply(api: Api, staff: StaffLogin, chat: Chat, text: str) -> dict[str, Any]:
    """The inbox's reply endpoint (the claimer's free text), as the console page sends it."""
    res = httpx.post(f"{api.url}/api/staff/inbox/{chat.handoff_id}/reply", json={"text": text},
                     cookies=staff.cookies, headers={"x-csrf-token": staff.csrf, "accept": "application/json"},
                     timeout=10)
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return body


def staff_events_url(api: Api, conversation_id: str, after: int = 0) -> str:
    return f"{api.url}/api/staff/conversations/{conversation_id}/events?after={after}"


def hcp_events_url(api: Api, token: str, after: int = 0) -> str:
    return f"{api.url}/api/webchat/sessions/{token}/events?after={after}"
