"""What the content console needs on top of :mod:`knowledge.service`: uploads, previews, history, refresh.

- :func:`unpack_upload` turns an uploaded ``.jsonl`` or ``.zip`` (of a YAML directory) into a library
  path on disk, refusing oversized files, unsafe zip member names (zip-slip), links and zip bombs.
- :func:`preview_library` validates a library and says what loading it would do, writing nothing.
- :func:`list_catalogue` / :func:`item_history` are the items table and one item's versions.
- :class:`IndexRefresher` rebuilds the running api's retrieval index in the background after a load,
  so the bot's next question does not pay for the rebuild (``answer_question`` also syncs on demand).
"""

from __future__ import annotations

import hashlib
import logging
import re
import stat
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import ConciergeError, InvalidInput, NotFound
from knowledge.engine import KnowledgeBase
from knowledge.library import Library, LibraryInvalid, parse_library
from knowledge.models import ContentVersion
from knowledge.service import current_docs

log = logging.getLogger("concierge.knowledge.admin")

MAX_UPLOAD_BYTES = 10 * 1024 * 1024        # the uploaded file itself
MAX_UNPACKED_BYTES = 50 * 1024 * 1024      # everything a zip expands to, counted while extracting
MAX_ZIP_MEMBERS = 5000
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class UploadTooLarge(ConciergeError):
    status_code = 413
    code = "too_large"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def safe_filename(name: str | None, default: str = "library") -> str:
    """The uploaded file's base name, reduced to harmless characters (it is shown and used on disk)."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    cleaned = _SAFE_NAME.sub("_", base).strip("._")[:100]
    return cleaned or default


@dataclass(frozen=True)
class Upload:
    filename: str   # safe base name, e.g. "library.jsonl"
    kind: str       # "jsonl" | "zip"
    sha256: str
    size: int


def describe_upload(filename: str | None, data: bytes) -> Upload:
    """Check the size and the type of an upload; the type comes from the name and, for zips, the bytes."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge(f"the file is {_mb(len(data))}; the limit is {_mb(MAX_UPLOAD_BYTES)}")
    if not data:
        raise InvalidInput("the file is empty")
    name = safe_filename(filename)
    lowered = name.lower()
    if lowered.endswith(".jsonl"):
        kind = "jsonl"
    elif lowered.endswith(".zip"):
        kind = "zip"
    else:
        raise InvalidInput(f"{name}: upload a .jsonl library (one item per line) or a .zip of a YAML "
                           "directory (items *.yaml + optional products.yaml)")
    return Upload(filename=name, kind=kind, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\\" in name or "\x00" in name:
        return "contains a backslash or NUL"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if any(part == ".." for part in name.split("/")):
        return "points outside the archive (..)"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if info.flag_bits & 0x1:
        return "is encrypted"
    return None


def unpack_upload(upload: Upload, data: bytes, workdir: Path) -> Path:
    """Write the upload under ``workdir`` and return the library path to parse.

    A zip is checked member by member before anything is written: unsafe names (``..``,
    absolute paths, backslashes), links and encrypted members reject the whole archive.
    Sizes are counted on the bytes actually decompressed, not on the sizes the archive
    claims, so a zip bomb stops at :data:`MAX_UNPACKED_BYTES`.
    """
    if upload.kind == "jsonl":
        path = workdir / upload.filename
        path.write_bytes(data)
        return path
    root = workdir / upload.filename
    root.mkdir()
    import io

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InvalidInput(f"{upload.filename}: not a valid zip file") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise InvalidInput(f"{upload.filename}: {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted")
        for info in members:
            problem = _member_problem(info)
            if problem:
                raise InvalidInput(f"{upload.filename}: member {info.filename!r} {problem}; nothing was loaded")
        total = 0
        resolved_root = root.resolve()
        for info in members:
            parts = [p for p in info.filename.split("/") if p not in ("", ".")]
            if info.is_dir() or not parts or parts[0] == "__MACOSX" or parts[-1].startswith("._"):
                continue
            if not parts[-1].lower().endswith((".yaml", ".yml")):
                continue  # READMEs and the like are not part of the library
            target = root.joinpath(*parts)
            if not target.resolve().is_relative_to(resolved_root):  # belt and braces after the name checks
                raise InvalidInput(f"{upload.filename}: member {info.filename!r} points outside the archive")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as dst:
                while chunk := src.read(64 * 1024):
                    total += len(chunk)
                    if total > MAX_UNPACKED_BYTES:
                        raise UploadTooLarge(f"{upload.filename}: unpacks to more than "
                                             f"{_mb(MAX_UNPACKED_BYTES)}; nothing was loaded")
                    dst.write(chunk)
    return _library_root(root, upload.filename)


def _library_root(root: Path, filename: str) -> Path:
    """The zip's top level, or its single top-level folder when the items sit in one."""
    if any(root.glob("*.yaml")):
        return root
    folders = [p for p in root.iterdir() if p.is_dir()]
    if len(folders) == 1 and any(folders[0].glob("*.yaml")):
        return folders[0]
    raise InvalidInput(f"{filename}: no *.yaml item files at the top of the zip or in a single top-level folder")


def relative_errors(errors: list[str], workdir: Path) -> list[str]:
    """Loader messages name files by their temporary path; show them relative to the upload."""
    prefixes = sorted({str(workdir) + "/", str(workdir.resolve()) + "/"}, key=len, reverse=True)
    out = []
    for err in errors:
        for prefix in prefixes:
            err = err.replace(prefix, "")
        out.append(err)
    return out


@dataclass
class LibraryPreview:
    items: int = 0
    added: list[str] = field(default_factory=list)         # ids not in the database yet
    new_versions: list[str] = field(default_factory=list)  # "id@version" that would become current
    unchanged: list[str] = field(default_factory=list)
    skipped_stale: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)


def preview_library(session: Session, library: Library) -> LibraryPreview:
    """What :func:`knowledge.service.load_library` would do with this (already parsed) library.

    Raises :class:`LibraryInvalid` for the same conflicts the loader refuses (an existing
    id@version with different content). Reads only.
    """
    ids = [i.id for i in library.items]
    versions = {(v.content_id, v.version): v.content_hash for v in session.scalars(
        select(ContentVersion).where(ContentVersion.content_id.in_(ids)))}
    current = {v.content_id: v.version for v in session.scalars(
        select(ContentVersion).where(ContentVersion.content_id.in_(ids), ContentVersion.is_current.is_(True)))}
    conflicts = [f"{i.source}: {i.id} version {i.version} is already loaded with different content; bump the version"
                 for i in library.items if (i.id, i.version) in versions
                 and versions[(i.id, i.version)] != i.content_hash()]
    if conflicts:
        raise LibraryInvalid(conflicts)
    preview = LibraryPreview(items=len(library.items), products=sorted(library.products))
    for item in sorted(library.items, key=lambda i: i.id):
        ref = f"{item.id}@{item.version}"
        if (item.id, item.version) in versions:
            preview.unchanged.append(ref)
        elif item.id in current and item.version < current[item.id]:
            preview.skipped_stale.append(ref)
        else:
            if item.id not in current:
                preview.added.append(item.id)
            preview.new_versions.append(ref)
    return preview


def parse_upload(path: Path, workdir: Path) -> Library:
    """:func:`parse_library` with error locations relative to the upload (``file:line: …``)."""
    try:
        return parse_library(path)
    except LibraryInvalid as exc:
        raise LibraryInvalid(relative_errors(exc.errors, workdir)) from None


# -- the items table and one item's history ------------------------------------------------------

@dataclass(frozen=True)
class CatalogueRow:
    content_id: str
    version: int
    versions: int
    title: str
    product: str
    kind: str
    status: str
    approval_code: str
    approved_at: date
    expires_at: date
    markets: list[str]
    audience: list[str]
    loaded_at: datetime
    withdrawn_at: datetime | None

    def state(self, today: date) -> str:
        """What the gate makes of the status and dates today (before market/audience)."""
        if self.status != "approved":
            return self.status
        if today < self.approved_at:
            return "not yet valid"
        if today > self.expires_at:
            return "expired"
        return "live"


def list_catalogue(session: Session, *, query: str = "", status: str = "") -> list[CatalogueRow]:
    counts = {cid: int(n) for cid, n in session.execute(
        select(ContentVersion.content_id, func.count()).group_by(ContentVersion.content_id))}
    stmt = select(ContentVersion).where(ContentVersion.is_current.is_(True)).order_by(ContentVersion.content_id)
    if status:
        stmt = stmt.where(ContentVersion.status == status)
    rows = []
    needle = query.strip().lower()
    for v in session.scalars(stmt):
        if needle and not any(needle in s.lower() for s in (v.content_id, v.title, v.product, v.approval_code)):
            continue
        rows.append(CatalogueRow(
            content_id=v.content_id, version=v.version, versions=counts.get(v.content_id, 1), title=v.title,
            product=v.product, kind=v.kind, status=v.status, approval_code=v.approval_code,
            approved_at=v.approved_at, expires_at=v.expires_at, markets=list(v.markets),
            audience=list(v.audience), loaded_at=v.loaded_at, withdrawn_at=v.withdrawn_at))
    return rows


def item_history(session: Session, content_id: str) -> list[ContentVersion]:
    """Every version of one item, newest first (the current one is flagged ``is_current``)."""
    rows = list(session.scalars(select(ContentVersion).where(ContentVersion.content_id == content_id)
                                .order_by(ContentVersion.version.desc())))
    if not rows:
        raise NotFound(f"content item {content_id} not found")
    return rows


# -- keeping the running api's index in step -----------------------------------------------------

class IndexRefresher:
    """Re-syncs a knowledge base with the database's current versions, in a background thread.

    Requests while a refresh runs are coalesced into one more run, so the index always ends
    up matching the last committed library. Gating never depends on this (it is read per
    query), so a withdrawal needs no refresh; a newly loaded item does.
    """

    def __init__(self, session_factory: Callable[[], Session], knowledge_base: Callable[[], KnowledgeBase]) -> None:
        self._session_factory = session_factory
        self._knowledge_base = knowledge_base
        self._lock = threading.Lock()
        self._pending = False
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_error: str | None = None

    def request(self) -> None:
        with self._lock:
            self._pending = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kb-refresh", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                self._pending = False
            try:
                with self._session_factory() as session:
                    docs = current_docs(session)
                self._knowledge_base().sync(docs)
                self.last_error = None
            except Exception as exc:  # keep serving with the old index; answer_question re-syncs anyway
                log.exception("knowledge index refresh failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.runs += 1

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until no refresh is running or pending (tests, the CLI). True when idle."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            thread.join(min(remaining, 0.5))


# -- uploads validated now, loaded later ----------------------------------------------------------

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
STAGED_TTL_SECONDS = 24 * 3600


def stage_upload(directory: Path, upload: Upload, data: bytes) -> None:
    """Keep a validated upload (by its sha256) so "Load" applies exactly the bytes that were checked."""
    import time

    directory.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - STAGED_TTL_SECONDS
    for old in directory.iterdir():
        if old.is_file() and old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
    (directory / f"{upload.sha256}.{upload.kind}").write_bytes(data)


def staged_upload(directory: Path, sha256: str, filename: str) -> tuple[Upload, bytes]:
    if not _SHA256.match(sha256 or ""):
        raise InvalidInput("not an upload reference")
    name = safe_filename(filename)
    kind = "zip" if name.lower().endswith(".zip") else "jsonl"
    path = directory / f"{sha256}.{kind}"
    if not path.is_file():
        raise NotFound("that upload is no longer waiting to be loaded; upload the file again")
    data = path.read_bytes()
    upload = describe_upload(name, data)
    if upload.sha256 != sha256:
        raise InvalidInput("the staged file does not match its checksum; upload the file again")
    return upload, data


def discard_staged(directory: Path, upload: Upload) -> None:
    (directory / f"{upload.sha256}.{upload.kind}").unlink(missing_ok=True)
