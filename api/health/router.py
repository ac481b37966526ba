"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api.state import AppState

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    state: AppState = request.app.state.concierge
    checks: dict[str, Any] = {}

    def db_ok() -> bool:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True

    try:
        checks["database"] = {"ok": await run_in_threadpool(db_ok)}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    # Ready when at least one Rasa replica has a model loaded: the client skips the others.
    replicas = await state.rasa.statuses()
    up = [r for r in replicas if r.ok]
    checks["rasa"] = {"ok": bool(up), "model": up[0].model if up else None}
    if not up:
        checks["rasa"]["error"] = replicas[0].error if len(replicas) == 1 else "no replica has a model loaded"
    if len(replicas) > 1:
        checks["rasa"]["replicas"] = {r.url: r.ok for r in replicas}
    safety_ready = state.safety_ready
    checks["safety_screen"] = {"ok": bool(safety_ready and safety_ready())}
    knowledge_ready = state.knowledge_ready
    checks["knowledge"] = {"ok": bool(knowledge_ready and knowledge_ready())}
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
