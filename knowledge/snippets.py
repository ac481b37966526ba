"""Canned staff snippets: short replies in the company's wording that content admins manage like
content (a draft, approved by a second content admin, valid for a date window, one market or all,
withdrawn at once, changed only by a new version) and staff insert into their reply box.

A snippet is staff wording, not MLR-approved product content: once inserted it is sent by the
normal staff reply path (and screened there like anything else a person types). What this module
guarantees is that only a current, approved, in-date snippet for the HCP's market can be inserted.
The audit chain holds codes, versions and the SHA-256 of a body, never the text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.errors import Conflict, Forbidden, InvalidInput, NotFound
from api.staff import notes
from knowledge.models import StaffSnippet

CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,39}$")
MAX_TITLE = 200
MAX_BODY = 2000  # a reply is at most 4000 characters; a snippet leaves room for the rest of it
MARKET = re.compile(r"^[A-Z]{2}$")


class SnippetUnusable(Conflict):
    """The snippet is not approved, not in date or not for this market: nothing was inserted."""

    code = "snippet_unusable"


class SnippetStatus(StrEnum):
    draft = "draft"
    approved = "approved"
    withdrawn = "withdrawn"
    superseded = "superseded"  # an approved version replaced by a newer approved one


@dataclass(frozen=True)
class SnippetDraft:
    code: str
    title: str
    body: str
    valid_from: date
    valid_to: date
    market: str | None = None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _clean(draft: SnippetDraft) -> SnippetDraft:
    code = draft.code.strip().upper()
    title = draft.title.strip()
    body = draft.body.replace("\r\n", "\n").strip()
    market = (draft.market or "").strip().upper() or None
    problems = []
    if not CODE.match(code):
        problems.append("the code is 2–40 capital letters, digits, '-' or '_' (for example GREETING-1)")
    if not title:
        problems.append("the title is empty")
    elif len(title) > MAX_TITLE:
        problems.append(f"the title is longer than {MAX_TITLE} characters")
    if not body:
        problems.append("the text is empty")
    elif len(body) > MAX_BODY:
        problems.append(f"the text is longer than {MAX_BODY} characters ({len(body)})")
    if market is not None and not MARKET.match(market):
        problems.append("the market is a two-letter country code, or empty for every market")
    if draft.valid_to <= draft.valid_from:
        problems.append("'valid until' must be after 'valid from'")
    if problems:
        raise InvalidInput("; ".join(problems), detail={"problems": problems})
    return SnippetDraft(code, title, body, draft.valid_from, draft.valid_to, market)


def _audit(session: Session, action: str, snippet: StaffSnippet, actor: str, now: datetime, **data: object) -> None:
    audit.record(session, action=action, subject_type="staff_snippet", subject_id=snippet.id, actor_type="staff",
                 actor_id=actor, data={"code": snippet.code, "version": snippet.version, **data}, at=now)


def get(session: Session, snippet_id: str) -> StaffSnippet:
    row = session.get(StaffSnippet, snippet_id)
    if row is None:
        raise NotFound("no such snippet")
    return row


def list_versions(session: Session, code: str) -> list[StaffSnippet]:
    return list(session.scalars(select(StaffSnippet).where(StaffSnippet.code == code)
                                .order_by(StaffSnippet.version.desc())))


def list_latest(session: Session) -> list[StaffSnippet]:
    """The newest version of every code (what the content console lists)."""
    newest = (select(StaffSnippet.code, func.max(StaffSnippet.version).label("v"))
              .group_by(StaffSnippet.code).subquery())
    return list(session.scalars(select(StaffSnippet).join(
        newest, (StaffSnippet.code == newest.c.code) & (StaffSnippet.version == newest.c.v))
        .order_by(StaffSnippet.code)))


def create(session: Session, draft: SnippetDraft, *, actor: str, now: datetime) -> StaffSnippet:
    """A new snippet code, or a new version of an existing one, as a draft."""
    d = _clean(draft)
    versions = list_versions(session, d.code)
    if any(v.status == SnippetStatus.draft for v in versions):
        raise Conflict(f"{d.code} already has a draft; approve or withdraw it before writing another version")
    row = StaffSnippet(code=d.code, version=(versions[0].version + 1) if versions else 1, title=d.title,
                       body=d.body, status=SnippetStatus.draft, market=d.market, valid_from=d.valid_from,
                       valid_to=d.valid_to, created_by=actor, created_at=now)
    session.add(row)
    session.flush()
    _audit(session, "snippet.drafted", row, actor, now, body_sha256=_digest(d.body), market=d.market,
           valid_from=d.valid_from.isoformat(), valid_to=d.valid_to.isoformat())
    return row


def approve(session: Session, snippet_id: str, *, actor: str, now: datetime) -> StaffSnippet:
    """Approve a draft. The approver is never its author (four eyes); the previously approved
    version of the code is superseded in the same transaction."""
    row = get(session, snippet_id)
    if row.status != SnippetStatus.draft:
        raise Conflict(f"{row.code} v{row.version} is {row.status}; only a draft can be approved")
    if row.created_by == actor:
        raise Forbidden("a snippet is approved by a content admin other than its author")
    superseded = []
    for old in list_versions(session, row.code):
        if old.id != row.id and old.status == SnippetStatus.approved:
            old.status = SnippetStatus.superseded
            superseded.append(old.version)
    row.status = SnippetStatus.approved
    row.approved_by = actor
    row.approved_at = now
    session.flush()
    _audit(session, "snippet.approved", row, actor, now, body_sha256=_digest(row.body), superseded=superseded)
    return row


def withdraw(session: Session, snippet_id: str, *, actor: str, now: datetime, reason: str) -> StaffSnippet:
    """From this flush on the snippet cannot be inserted (a draft can be withdrawn too)."""
    row = get(session, snippet_id)
    if row.status in (SnippetStatus.withdrawn, SnippetStatus.superseded):
        raise Conflict(f"{row.code} v{row.version} is already {row.status}")
    reason = reason.strip()
    if not reason:
        raise InvalidInput("a withdrawal needs a reason")
    row.status = SnippetStatus.withdrawn
    row.withdrawn_by = actor
    row.withdrawn_at = now
    session.flush()
    _audit(session, "snippet.withdrawn", row, actor, now,
           **notes.keep(session, reason[:2000], subject_type="staff_snippet", subject_id=row.id, field="reason",
                        author_id=actor, at=now))
    return row


def unusable_reason(row: StaffSnippet, market: str, today: date) -> str | None:
    """Why staff may not insert this snippet for an HCP in ``market`` today, or None."""
    if row.status != SnippetStatus.approved:
        return f"it is {row.status}"
    if today < row.valid_from:
        return f"it is valid only from {row.valid_from.isoformat()}"
    if today >= row.valid_to:
        return f"it expired on {row.valid_to.isoformat()}"
    if row.market is not None and row.market != market:
        return f"it is for market {row.market}"
    return None


def list_usable(session: Session, market: str, today: date) -> list[StaffSnippet]:
    rows = session.scalars(select(StaffSnippet).where(StaffSnippet.status == SnippetStatus.approved)
                           .order_by(StaffSnippet.title, StaffSnippet.code))
    return [r for r in rows if unusable_reason(r, market, today) is None]


def take_for_reply(session: Session, snippet_id: str, *, market: str, actor: str, conversation_id: str,
                   handoff_id: str, now: datetime) -> StaffSnippet:
    """The snippet's text for a staff member's reply box, if it may be used now (audited)."""
    row = session.get(StaffSnippet, snippet_id)
    if row is None:
        raise NotFound("no such snippet")
    reason = unusable_reason(row, market, now.date())
    if reason is not None:
        # nothing is inserted; the caller records the refusal in a transaction of its own
        raise SnippetUnusable(f"snippet {row.code} cannot be used: {reason}",
                              detail={"reason": reason, "code": row.code, "version": row.version})
    _audit(session, "snippet.inserted", row, actor, now, handoff_id=handoff_id, conversation_id=conversation_id)
    return row
