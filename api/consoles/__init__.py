"""The staff consoles. Each console is one module with a ``router``; add it to ``CONSOLE_MODULES``."""

from __future__ import annotations

import importlib

from fastapi import APIRouter

CONSOLE_MODULES: tuple[str, ...] = (
    "api.staff.router",
    "api.consoles.inbox",
    "api.consoles.assist",
    "api.consoles.snippets",
    "api.relay.router",
    "api.consoles.content",
    "api.consoles.admin",
    "api.consoles.verifications",
    "api.consoles.medical",
    "api.consoles.requests",
    "api.consoles.safety",
    "api.consoles.cx",
    "api.consoles.exports",
    "api.hcps.router",
)


def routers() -> list[APIRouter]:
    found: list[APIRouter] = []
    for name in CONSOLE_MODULES:
        router: APIRouter = importlib.import_module(name).router
        found.append(router)
    return found
