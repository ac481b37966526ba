"""Request-body limits enforced while the body streams in (ASGI middleware).

A route that reads its body (``request.body()``, a form, an upload) would otherwise hold all of it
in memory before any check of its own could run: a declared ``Content-Length`` over the limit is
refused before a byte is read, and a chunked body is counted as it arrives and refused the moment it
passes the limit. Each path prefix has its own limit (the first matching prefix wins); anything else
gets the default. The refusal is a 413 with the project's JSON error shape.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ConciergeError


class BodyTooLarge(ConciergeError):
    status_code = 413
    code = "too_large"


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"request body too large (limit {limit} bytes)", detail={"max_bytes": limit})


class BodyLimit:
    def __init__(self, app: ASGIApp, *, default: int, prefixes: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.default = default
        self.prefixes = list(prefixes)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.prefixes:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if b"\x00" in query or b"%00" in query:  # no column or filter takes a NUL (PostgreSQL refuses it)
            await _refuse_nul(send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            await _refuse(send, _too_large(limit), html=_wants_html(scope))
            return
        received = 0
        exceeded = False
        # Whether the client has sent its whole body: a response that goes out before that closes the
        # connection, or the server would go on reading (and discarding) the rest of a huge body.
        body_done = declared == 0 or (declared is None and not _chunked(scope))
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded, body_done
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    body_done = True
                if received > limit:
                    exceeded = True
                    raise _too_large(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal refused
            if refused:
                return  # the app's own answer to the body it could not read is replaced by the 413
            if message["type"] == "http.response.start":
                if exceeded:
                    # A framework may turn the refusal into its own error (FastAPI: 400 "error parsing
                    # the body"): the client is told the truth instead.
                    refused = True
                    await _refuse(send, _too_large(limit), html=_wants_html(scope))
                    return
                if not body_done:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge as exc:  # a route that does not go through the app's error handlers
            if refused:
                return
            await _refuse(send, exc, html=_wants_html(scope))


def _chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in scope.get("headers", []))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _refuse(send: Send, exc: BodyTooLarge, *, html: bool = False) -> None:
    if html:  # a console page in a browser
        payload = (f"<!doctype html><title>Too large</title><h1>Too large</h1><p>{exc.message}; "
                   "nothing was stored.</p>").encode()
        content_type = b"text/html; charset=utf-8"
    else:
        body: dict[str, Any] = {"error": {"code": exc.code, "message": exc.message, "detail": exc.detail}}
        payload = json.dumps(body).encode()
        content_type = b"application/json"
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


def _wants_html(scope: Scope) -> bool:
    path = str(scope.get("path", ""))
    accept = b"".join(value for name, value in scope.get("headers", []) if name == b"accept")
    return path.startswith("/console") and b"text/html" in accept


async def _refuse_nul(send: Send) -> None:
    body = {"error": {"code": "invalid_input", "message": "query parameters may not contain NUL characters",
                      "detail": {}}}
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 422,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
