"""The content console (content_admin): upload and validate a library, load it, see versions, withdraw, gaps.

Pages live at /console/content/..., JSON at /api/staff/content/... . Every action is audited; an
upload is audited with the file's sha256 whether it was valid or not.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.audit import service as audit
from api.consoles.render import render
from api.db import unit_of_work
from api.errors import ConciergeError, Conflict, InvalidInput
from api.staff.auth import Staff
from api.staff.service import StaffIdentity
from api.state import AppState, app_state
from knowledge import admin
from knowledge.library import LibraryInvalid, Status
from knowledge.service import get_knowledge_base, load_library, withdraw

router = APIRouter()
ContentAdmin = Annotated[StaffIdentity, Staff("content_admin")]

# Multipart framing and the small form fields around the file.
FORM_OVERHEAD = 64 * 1024
GAP_WINDOWS = (7, 30, 90, 365)


def _staging_dir(state: AppState) -> Path:
    return state.settings.var_dir / "content_uploads"


def refresher(state: AppState) -> admin.IndexRefresher:
    """The api's one background index refresher (created on first use)."""
    if state.knowledge_refresher is None:
        index_dir = state.settings.resolved_index_dir
        state.knowledge_refresher = admin.IndexRefresher(state.session_factory, lambda: get_knowledge_base(index_dir))
    return state.knowledge_refresher


class LengthRequired(ConciergeError):
    status_code = 411
    code = "length_required"


def upload_size_guard(request: Request) -> None:
    """Refuse an oversized upload from its Content-Length, before the body is read at all."""
    length = request.headers.get("content-length")
    if length is None:
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            raise LengthRequired("uploads must say their size (Content-Length)")
        return
    if not length.isdigit() or int(length) > admin.MAX_UPLOAD_BYTES + FORM_OVERHEAD:
        raise admin.UploadTooLarge(f"the file is larger than the {admin.MAX_UPLOAD_BYTES // (1024 * 1024)} MB "
                                   "limit; nothing was loaded")


# -- the library: upload, validate, load ---------------------------------------------------------

def _audit_upload(state: AppState, ident: StaffIdentity, action: str, data: dict[str, Any]) -> None:
    with unit_of_work(state.session_factory) as session:
        audit.record(session, action=action, subject_type="content_library", subject_id=data.get("sha256"),
                     actor_type="staff", actor_id=ident.id, data=data, at=state.clock.now())


def _process(request: Request, ident: StaffIdentity, upload: admin.Upload, data: bytes, *, load: bool) -> Response:
    """Validate (and, when asked, load) one uploaded library; render the report."""
    state = app_state(request)
    facts: dict[str, Any] = {"sha256": upload.sha256, "filename": upload.filename, "bytes": upload.size}
    ctx: dict[str, Any] = {"upload": upload, "loaded": False, "preview": None, "report": None, "errors": []}
    with tempfile.TemporaryDirectory(prefix="library-upload-") as tmp:
        workdir = Path(tmp)
        try:
            path = admin.unpack_upload(upload, data, workdir)
            library = admin.parse_upload(path, workdir)
            with unit_of_work(state.session_factory) as session:
                ctx["preview"] = admin.preview_library(session, library)
            if load:
                try:
                    with unit_of_work(state.session_factory) as session:
                        report = load_library(session, path, actor=ident.id)
                        audit.record(session, action="content.library_loaded", subject_type="content_library",
                                     subject_id=upload.sha256, actor_type="staff", actor_id=ident.id,
                                     data={**facts, "items": report.items, "new_versions": report.new_versions,
                                           "unchanged": report.unchanged, "skipped_stale": report.skipped_stale,
                                           "products": report.products}, at=state.clock.now())
                except LibraryInvalid as exc:
                    raise LibraryInvalid(admin.relative_errors(exc.errors, workdir)) from None
                except IntegrityError:
                    raise Conflict("another load changed these items at the same time; validate again") from None
                ctx.update(report=report, loaded=True)
                admin.discard_staged(_staging_dir(state), upload)
                if report.new_versions:
                    refresher(state).request()
            else:
                admin.stage_upload(_staging_dir(state), upload, data)
                preview = ctx["preview"]
                _audit_upload(state, ident, "content.library_validated",
                              {**facts, "items": preview.items, "new_versions": preview.new_versions})
        except LibraryInvalid as exc:
            _audit_upload(state, ident, "content.library_rejected", {**facts, "errors": exc.errors[:50],
                                                                     "error_count": len(exc.errors)})
            return render(request, "content_library.html", ident, status_code=exc.status_code,
                          flash=f"{upload.filename} is not a valid library: nothing was loaded.", flash_kind="error",
                          **{**ctx, "errors": exc.errors, "preview": None})
        except ConciergeError as exc:
            _audit_upload(state, ident, "content.library_rejected", {**facts, "errors": [exc.message]})
            return render(request, "content_library.html", ident, status_code=exc.status_code, flash=exc.message,
                          flash_kind="error", **{**ctx, "preview": None})
    flash = (f"Loaded {upload.filename}: {len(ctx['report'].new_versions)} new version(s)." if load
             else f"{upload.filename} is valid. Nothing is loaded until you press Load.")
    return render(request, "content_library.html", ident, flash=flash, **ctx)


def _rejected_upload(request: Request, ident: StaffIdentity, filename: str | None, data: bytes,
                     exc: ConciergeError) -> Response:
    import hashlib

    state = app_state(request)
    _audit_upload(state, ident, "content.library_rejected",
                  {"sha256": hashlib.sha256(data).hexdigest(), "filename": admin.safe_filename(filename),
                   "bytes": len(data), "errors": [exc.message]})
    return _overview(request, ident, status_code=exc.status_code, flash=exc.message, flash_kind="error")


@router.post("/console/content/library", response_class=HTMLResponse, dependencies=[Depends(upload_size_guard)])
async def upload_library(request: Request, ident: ContentAdmin) -> Response:
    form = await request.form(max_files=1, max_fields=5)
    file = form.get("library")
    load = form.get("action") == "load"
    if not isinstance(file, UploadFile) or not file.filename:
        return await run_in_threadpool(_overview, request, ident, status_code=422,
                                       flash="Choose a library file (.jsonl or .zip) to upload.", flash_kind="error")
    data = await file.read(admin.MAX_UPLOAD_BYTES + 1)
    filename = file.filename
    try:
        upload = admin.describe_upload(filename, data)
    except ConciergeError as exc:
        return await run_in_threadpool(_rejected_upload, request, ident, filename, data, exc)
    return await run_in_threadpool(_process, request, ident, upload, data, load=load)


@router.post("/console/content/library/load", response_class=HTMLResponse)
def load_staged(request: Request, ident: ContentAdmin, upload: Annotated[str, Form(max_length=64)],
                filename: Annotated[str, Form(max_length=200)]) -> Response:
    state = app_state(request)
    try:
        staged, data = admin.staged_upload(_staging_dir(state), upload, filename)
    except ConciergeError as exc:
        return _overview(request, ident, status_code=exc.status_code, flash=exc.message, flash_kind="error")
    return _process(request, ident, staged, data, load=True)


# -- items ---------------------------------------------------------------------------------------

def _overview(request: Request, ident: StaffIdentity, *, status_code: int = 200, q: str = "", status: str = "",
              **extra: Any) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        rows = admin.list_catalogue(session, query=q, status=status)
    return render(request, "content.html", ident, status_code=status_code, rows=rows, q=q, status=status,
                  statuses=[s.value for s in Status], today=state.clock.now().date(),
                  max_mb=admin.MAX_UPLOAD_BYTES // (1024 * 1024), **extra)


@router.get("/console/content", response_class=HTMLResponse)
def content_home(request: Request, ident: ContentAdmin, q: str = "", status: str = "") -> Response:
    if status and status not in {s.value for s in Status}:
        status = ""
    return _overview(request, ident, q=q[:100], status=status)


def _item_page(request: Request, ident: StaffIdentity, content_id: str, *, status_code: int = 200,
               **extra: Any) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        versions = admin.item_history(session, content_id)
        current = next((v for v in versions if v.is_current), versions[0])
        return render(request, "content_item.html", ident, status_code=status_code, content_id=content_id,
                      versions=versions, current=current, today=state.clock.now().date(), **extra)


@router.get("/console/content/items/{content_id}", response_class=HTMLResponse)
def item_page(request: Request, ident: ContentAdmin, content_id: str, done: str = "") -> Response:
    flash = "Withdrawn: the bot no longer sends this item, and queued messages carrying it are not delivered." \
        if done == "withdrawn" else None
    return _item_page(request, ident, content_id, flash=flash)


@router.post("/console/content/items/{content_id}/withdraw", response_class=HTMLResponse)
def withdraw_item(request: Request, ident: ContentAdmin, content_id: str,
                  reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    state = app_state(request)
    try:
        with unit_of_work(state.session_factory) as session:
            current = next((v for v in admin.item_history(session, content_id) if v.is_current), None)
            if current is None or current.status == Status.withdrawn:
                raise Conflict(f"{content_id} is already withdrawn")
            withdraw(session, content_id, actor=ident.id, reason=reason.strip())
    except InvalidInput as exc:
        return _item_page(request, ident, content_id, status_code=exc.status_code, flash=exc.message,
                          flash_kind="error", reason=reason)
    except Conflict as exc:
        return _item_page(request, ident, content_id, status_code=exc.status_code, flash=exc.message,
                          flash_kind="error")
    return RedirectResponse(f"/console/content/items/{quote(content_id, safe='')}?done=withdrawn", status_code=303)


# -- the content-gap report ----------------------------------------------------------------------

@router.get("/console/content/gaps", response_class=HTMLResponse)
def gaps_page(request: Request, ident: ContentAdmin, days: int = 30) -> Response:
    from knowledge.gaps import gap_report

    if days not in GAP_WINDOWS:
        days = 30
    state = app_state(request)
    now = state.clock.now()
    with unit_of_work(state.session_factory) as session:
        clusters = gap_report(session, since=now - timedelta(days=days))
        audit.record(session, action="content.gap_report_viewed", subject_type="content_library", subject_id=None,
                     actor_type="staff", actor_id=ident.id, data={"days": days, "clusters": len(clusters)}, at=now)
    return render(request, "content_gaps.html", ident, clusters=clusters, days=days, windows=GAP_WINDOWS)


# -- JSON ----------------------------------------------------------------------------------------

@router.get("/api/staff/content/items")
def items_json(request: Request, ident: ContentAdmin) -> JSONResponse:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        rows = admin.list_catalogue(session)
    today = state.clock.now().date()
    return JSONResponse({"items": [{
        "id": r.content_id, "version": r.version, "versions": r.versions, "title": r.title, "product": r.product,
        "kind": r.kind, "status": r.status, "state": r.state(today), "approval_code": r.approval_code,
        "approved_at": r.approved_at.isoformat(), "expires_at": r.expires_at.isoformat(), "markets": r.markets,
        "audience": r.audience} for r in rows]})


@router.get("/api/staff/content/items/{content_id}")
def item_json(request: Request, ident: ContentAdmin, content_id: str) -> JSONResponse:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        versions = [{
            "version": v.version, "current": v.is_current, "title": v.title, "product": v.product, "kind": v.kind,
            "status": v.status, "approval_code": v.approval_code, "approved_at": v.approved_at.isoformat(),
            "expires_at": v.expires_at.isoformat(), "markets": list(v.markets), "audience": list(v.audience),
            "questions": list(v.questions), "body": v.body, "loaded_at": v.loaded_at.isoformat(),
            "loaded_by": v.loaded_by, "withdrawn_at": v.withdrawn_at.isoformat() if v.withdrawn_at else None,
            "withdrawn_reason": v.withdrawn_reason,
        } for v in admin.item_history(session, content_id)]
    return JSONResponse({"id": content_id, "versions": versions})
