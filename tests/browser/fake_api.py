"""A stand-in for the web chat JSON API, used to test the page's rendering rules.

It serves the real static page and implements the fixed contract:

- ``POST /api/webchat/sessions`` → ``{"session_id": ..., "stream_url": ...}``
- ``POST /api/webchat/messages`` ``{"text", "payload"?}`` (X-Chat-Session header) → the bot's replies
- ``GET  /api/webchat/messages?after=<id>`` (X-Chat-Session header) → everything after that id

Canned behaviour is chosen by the text sent (see ``_replies_for``). ``FakeChatApi.requests``
records every message body received so tests can check what the page sent, and
``FakeChatApi.fail_next`` makes the next N message posts fail with a JSON 503.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from tests.conftest import REPO

STATIC_DIR = REPO / "api" / "channels" / "webchat" / "static"

XSS_TEXT = 'Careful: <img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> & <b>bold</b>'
MULTILINE_TEXT = "Line one\nLine two\n\n  indented line four"
APPROVED_TEXT = "Cardiozan 10 mg once daily.\nSee the full Prescribing Information."
APPROVAL_CODE = "US-CZN-0042 v3"
STAFF_TEXT = "Hi Dr. Lee, this is Sam, your representative. How can I help?"


@dataclass
class _Message:
    id: int
    text: str
    direction: str  # "in" | "out"
    sender: str  # "hcp" | "bot" | "staff" | "system"
    content_id: str | None = None
    content_version: int | None = None
    approval_code: str | None = None
    buttons: list[dict[str, str]] = field(default_factory=list)
    visible_at: float = 0.0

    def as_reply(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "content_id": self.content_id,
            "content_version": self.content_version,
            "approval_code": self.approval_code,
            "buttons": self.buttons,
            "sender": self.sender,
        }

    def as_history(self) -> dict[str, Any]:
        return {**self.as_reply(), "direction": self.direction}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class FakeChatApi:
    """State of the stand-in API; ``app`` is the ASGI application to serve."""

    def __init__(self, *, staff_delay: float = 1.0) -> None:
        self.staff_delay = staff_delay
        self.sessions: dict[str, list[_Message]] = {}
        self.requests: list[dict[str, Any]] = []
        self.urls: list[str] = []  # every message URL the page used (the secret must never be in one)
        self.sessions_created = 0
        self.fail_next = 0  # the next N message posts answer 503
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = self._build()

    # ------------------------------------------------------------- behaviour

    def _out(self, text: str, **kwargs: Any) -> _Message:
        return _Message(id=next(self._ids), text=text, direction="out", sender="bot", **kwargs)

    def _replies_for(self, text: str, payload: str | None) -> list[_Message]:
        key = (payload or text).strip().lower()
        if key == "hello":
            return [self._out("Hello! I can share approved product information or connect you with a person.")]
        if key == "dosing":
            return [
                self._out(
                    APPROVED_TEXT,
                    content_id="czn-dosing",
                    content_version=3,
                    approval_code=APPROVAL_CODE,
                    buttons=[
                        {"title": "Helpful", "payload": '/rate_answer{"helpful": true}'},
                        {"title": "Not helpful", "payload": '/rate_answer{"helpful": false}'},
                    ],
                ),
            ]
        if key.startswith("/rate_answer"):
            return [self._out("Thank you for your feedback.")]
        if key == "xss":
            return [self._out(XSS_TEXT)]
        if key == "multiline":
            return [self._out(MULTILINE_TEXT)]
        if key == "rep":
            staff = _Message(
                id=0,  # numbered when it becomes visible, like a message stored later
                text=STAFF_TEXT,
                direction="out",
                sender="staff",
                visible_at=time.monotonic() + self.staff_delay,
            )
            return [self._out("I've asked your representative to join. They'll reply here."), staff]
        return [self._out(f"You said: {text}")]

    # ------------------------------------------------------------------ app

    def _build(self) -> FastAPI:
        app = FastAPI()
        app.mount("/static/webchat", StaticFiles(directory=STATIC_DIR), name="webchat-static")

        @app.get("/")
        def index() -> FileResponse:
            return FileResponse(STATIC_DIR / "index.html")

        @app.post("/api/webchat/sessions", status_code=201)
        def create_session() -> dict[str, str]:
            with self._lock:
                session_id = uuid.uuid4().hex
                self.sessions[session_id] = []
                self.sessions_created += 1
            # no live stream here: the page falls back to polling, which is what these tests pin
            return {"session_id": session_id, "stream_url": f"/no-stream/{uuid.uuid4().hex}"}

        @app.post("/api/webchat/messages", response_model=None)
        async def post_message(request: Request) -> JSONResponse | dict[str, Any]:
            session_id = request.headers.get("x-chat-session", "")
            self.urls.append(str(request.url))
            body = await request.json()
            self.requests.append({"session_id": session_id, **body})
            if session_id not in self.sessions:
                return _error(404, "not_found", "This chat session has ended.")
            text = str(body.get("text", ""))
            payload = body.get("payload")
            if self.fail_next > 0:
                self.fail_next -= 1
                return _error(503, "upstream_unavailable", "The assistant is unavailable right now.")
            if text.strip().lower() == "fail":
                return _error(503, "upstream_unavailable", "The assistant is unavailable right now.")
            if text.strip().lower() == "slow":
                await asyncio.sleep(1.0)
            with self._lock:
                log = self.sessions[session_id]
                log.append(_Message(id=next(self._ids), text=text, direction="in", sender="hcp"))
                replies = self._replies_for(text, payload)
                log.extend(replies)
            immediate = [m for m in replies if m.visible_at == 0.0]
            return {"messages": [m.as_reply() for m in immediate]}

        @app.get("/api/webchat/messages", response_model=None)
        def list_messages(request: Request, after: int = 0) -> JSONResponse | dict[str, Any]:
            session_id = request.headers.get("x-chat-session", "")
            self.urls.append(str(request.url))
            if session_id not in self.sessions:
                return _error(404, "not_found", "This chat session has ended.")
            now = time.monotonic()
            with self._lock:
                visible = []
                for m in self.sessions[session_id]:
                    if m.visible_at and m.visible_at > now:
                        continue
                    if m.id == 0:
                        m.id = next(self._ids)
                    visible.append(m)
            return {"messages": [m.as_history() for m in visible if m.id > after]}

        return app
