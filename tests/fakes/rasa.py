"""A fake Rasa REST channel for api tests (httpx.MockTransport, no sockets).

``behaviour`` decides what a turn does: reply, hang, fail, or answer with nothing. It
records every call, and notes when two turns of one sender overlap (they must not).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeRasa:
    mode: str = "ok"  # ok | hang | error | empty | garbage
    delay: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    overlaps: int = 0
    _active: set[str] = field(default_factory=set)

    def reply_for(self, text: str) -> list[dict[str, Any]]:
        if text.startswith("/request_human") or "person" in text:
            return [{"recipient_id": "x", "custom": {"text": "A colleague will join.", "buttons": []}}]
        return [{"recipient_id": "x", "text": f"echo: {text}",
                 "buttons": [{"title": "Talk to a person", "payload": "/request_human"}]}]

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/status":
            return httpx.Response(200, json={"model_id": "fake", "model_file": "fake.tar.gz"})
        body = json.loads(request.content)
        sender = body["sender"]
        self.calls.append(body)
        if sender in self._active:
            self.overlaps += 1
        self._active.add(sender)
        try:
            if self.mode == "hang":
                await asyncio.sleep(3600)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.mode == "error":
                return httpx.Response(500, text="boom")
            if self.mode == "empty":
                return httpx.Response(200, json=[])
            if self.mode == "garbage":
                return httpx.Response(200, text="<html>")
            return httpx.Response(200, json=self.reply_for(body["message"]))
        finally:
            self._active.discard(sender)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)
