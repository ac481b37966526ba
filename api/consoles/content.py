"""The content console (content_admin): upload and validate a library, load it, see versions, withdraw, gaps.

Pages live at /console/content/..., JSON at /api/staff/content/... . Every action is audited; an
upload is audited with the file's sha256 whether it was valid or not. A valid upload shows its
impact on the questions HCPs recently asked (``knowledge.replay``, as ``concierge knowledge
replay`` does) before the admin loads it or cancels.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
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
from api.db import read_only, unit_of_work
from api.errors import ConciergeError, Conflict, InvalidInput
from api.staff.auth import Staff
from api.staff.service import StaffIdentity
from api.state import AppState, app_state
from feedback.redact import redact
from knowledge import admin
from knowledge.engine import LibraryKnowledgeBase
from knowledge.library import Library, LibraryInvalid, Status
from knowledge.replay import ReplayChange, ReplayReport, library_after_load, replay
from knowledge.service import get_knowledge_base, load_library, withdraw

router = APIRouter()
ContentAdmin = Annotated[StaffIdentity, Staff("content_admin")]

# Multipart framing and the small form fields around the file.
FORM_OVERHEAD = 64 * 1024
GAP_WINDOWS = (7, 30, 90, 365)
# The impact replay runs inside the upload request: a bounded window and number of questions.
REPLAY_WINDOWS = (7, 30, 90)
REPLAY_DEFAULT_DAYS = 30
REPLAY_MAX_QUESTIONS = 1000      # ≈ 14 s with the shipped model on 2 busy cores (13.8 ms a question)
REPLAY_SHOWN_CHANGES = 50
# New or changed items must be embedded before the replay can rank them: beyond this many the upload
# page says so and points to the CLI instead of holding the request for minutes.
REPLAY_MAX_NEW_ITEMS = 100       # 500 MedQuAD items took 83 s to embed (762 passages) here


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


@dataclass(frozen=True)
class ShownChange:
    query: str              # redacted
    asked_at: str
    before: str | None      # the content id answered with, None = escalated
    after: str | None


@dataclass(frozen=True)
class Impact:
    days: int
    report: ReplayReport
    shown: list[ShownChange]  # the most recent changes first, at most REPLAY_SHOWN_CHANGES

    @property
    def not_shown(self) -> int:
        return len(self.report.changed) - len(self.shown)


def _answered_with(outcome: str) -> str | None:
    return outcome.removeprefix("answer:") if outcome.startswith("answer:") else None


def _shown(change: ReplayChange) -> ShownChange:
    return ShownChange(redact(change.query), change.asked_at[:16].replace("T", " "),
                       _answered_with(change.before), _answered_with(change.after))


def _impact(state: AppState, ident: StaffIdentity, upload: admin.Upload, library: Library, days: int) -> Impact:
    """Replay the last ``days`` days' questions against the library this upload would leave; audited
    with the counts only (question texts are HCP free text)."""
    now = state.clock.now()
    with read_only(state.engine) as session:
        after_load = library_after_load(session, library)
    # A sibling, not the bot's own knowledge base: syncing that one would make the bot answer from
    # a library nobody has loaded.
    lkb = LibraryKnowledgeBase(after_load, get_knowledge_base(state.settings.resolved_index_dir).sibling())
    with read_only(state.engine) as session:
        report = replay(session, lkb, since=now - timedelta(days=days), today=now.date(),
                        limit=REPLAY_MAX_QUESTIONS, until=now)
    with unit_of_work(state.session_factory) as session:
        audit.record(session, action="content.replay_shown", subject_type="content_library",
                     subject_id=upload.sha256, actor_type="staff", actor_id=ident.id,
                     data={"sha256": upload.sha256, "filename": upload.filename, "days": days,
                           "asked": report.asked, "replayed": report.questions, "capped": report.capped,
                           "answered": report.answered, "answered_before": report.answered_before,
                           "escalated": report.escalated, "changed": len(report.changed)}, at=now)
    latest = report.changed[::-1][:REPLAY_SHOWN_CHANGES]
    return Impact(days, report, [_shown(c) for c in latest])


def _process(request: Request, ident: StaffIdentity, upload: admin.Upload, data: bytes, *, load: bool,
             days: int = REPLAY_DEFAULT_DAYS) -> Response:
    """Validate (and, when asked, load) one uploaded library; render the report (and, before a load,
    the impact replay over the last ``days`` days)."""
    state = app_state(request)
    facts: dict[str, Any] = {"sha256": upload.sha256, "filename": upload.filename, "bytes": upload.size}
    ctx: dict[str, Any] = {"upload": upload, "loaded": False, "preview": None, "report": None, "errors": [],
                           "impact": None, "impact_skipped": 0, "max_questions": REPLAY_MAX_QUESTIONS,
                           "max_new_items": REPLAY_MAX_NEW_ITEMS}
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
                if len(preview.new_versions) > REPLAY_MAX_NEW_ITEMS:
                    ctx["impact_skipped"] = len(preview.new_versions)
                    _audit_upload(state, ident, "content.replay_skipped",
                                  {**facts, "new_versions": len(preview.new_versions),
                                   "limit": REPLAY_MAX_NEW_ITEMS})
                else:
                    ctx["impact"] = _impact(state, ident, upload, library, days)
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
             else f"{upload.filename} is valid. Nothing is loaded until you press Load this library.")
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
    days = _replay_days(form.get("days"))
    if not isinstance(file, UploadFile) or not file.filename:
        return await run_in_threadpool(_overview, request, ident, status_code=422,
                                       flash="Choose a library file (.jsonl or .zip) to upload.", flash_kind="error")
    data = await file.read(admin.MAX_UPLOAD_BYTES + 1)
    filename = file.filename
    try:
        upload = admin.describe_upload(filename, data)
    except ConciergeError as exc:
        return await run_in_threadpool(_rejected_upload, request, ident, filename, data, exc)
    return await run_in_threadpool(_process, request, ident, upload, data, load=load, days=days)


def _replay_days(value: object) -> int:
    return int(value) if isinstance(value, str) and value.isdigit() and int(value) in REPLAY_WINDOWS \
        else REPLAY_DEFAULT_DAYS


def _with_staged(request: Request, ident: StaffIdentity, upload: str, filename: str,
                 then: Callable[[admin.Upload, bytes], Response]) -> Response:
    """Go on (``then``) with the validated upload the form names; an unknown or expired one sends the
    admin back to the overview with the reason."""
    try:
        staged, data = admin.staged_upload(_staging_dir(app_state(request)), upload, filename)
    except ConciergeError as exc:
        return _overview(request, ident, status_code=exc.status_code, flash=exc.message, flash_kind="error")
    return then(staged, data)


@router.post("/console/content/library/load", response_class=HTMLResponse)
def load_staged(request: Request, ident: ContentAdmin, upload: Annotated[str, Form(max_length=64)],
                filename: Annotated[str, Form(max_length=200)]) -> Response:
    return _with_staged(request, ident, upload, filename,
                        lambda staged, data: _process(request, ident, staged, data, load=True))


@router.post("/console/content/library/cancel", response_class=HTMLResponse)
def cancel_staged(request: Request, ident: ContentAdmin, upload: Annotated[str, Form(max_length=64)],
                  filename: Annotated[str, Form(max_length=200)]) -> Response:
    """Drop a validated upload instead of loading it: nothing is loaded, the staged file is deleted."""
    def cancel(staged: admin.Upload, _data: bytes) -> Response:
        state = app_state(request)
        admin.discard_staged(_staging_dir(state), staged)
        _audit_upload(state, ident, "content.library_cancelled",
                      {"sha256": staged.sha256, "filename": staged.filename, "bytes": staged.size})
        return RedirectResponse("/console/content?done=cancelled", status_code=303)

    return _with_staged(request, ident, upload, filename, cancel)


# -- items ---------------------------------------------------------------------------------------

def _overview(request: Request, ident: StaffIdentity, *, status_code: int = 200, q: str = "", status: str = "",
              **extra: Any) -> Response:
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        rows = admin.list_catalogue(session, query=q, status=status)
    return render(request, "content.html", ident, status_code=status_code, rows=rows, q=q, status=status,
                  statuses=[s.value for s in Status], today=state.clock.now().date(),
                  max_mb=admin.MAX_UPLOAD_BYTES // (1024 * 1024), replay_windows=REPLAY_WINDOWS,
                  replay_days=REPLAY_DEFAULT_DAYS, **extra)


@router.get("/console/content", response_class=HTMLResponse)
def content_home(request: Request, ident: ContentAdmin, q: str = "", status: str = "", done: str = "") -> Response:
    if status and status not in {s.value for s in Status}:
        status = ""
    flash = "Upload cancelled: nothing was loaded." if done == "cancelled" else None
    return _overview(request, ident, q=q[:100], status=status, flash=flash)


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
