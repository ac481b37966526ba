"""Canned staff snippets: drafted, approved by a second content admin, versioned, expiring,
withdrawn; only a current, approved, in-date snippet for the HCP's market can be inserted."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.errors import Conflict, Forbidden, InvalidInput
from knowledge import snippets
from knowledge.models import StaffSnippet

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
AUTHOR, CHECKER = "author-admin", "checker-admin"


def _code() -> str:
    return f"T-{uuid.uuid4().hex[:8].upper()}"


def _draft(code: str, body: str = "Thank you for your patience, I am looking into this now.", **over: object
           ) -> snippets.SnippetDraft:
    fields: dict[str, object] = {"code": code, "title": "Looking into it", "body": body,
                                 "valid_from": date(2026, 1, 1), "valid_to": date(2027, 1, 1), "market": None}
    fields.update(over)
    return snippets.SnippetDraft(**fields)  # type: ignore[arg-type]


def _usable_ids(session: Session, market: str = "GB", today: date = NOW.date()) -> set[str]:
    return {r.id for r in snippets.list_usable(session, market, today)}


def _take(session: Session, row: StaffSnippet, market: str = "GB", now: datetime = NOW) -> StaffSnippet:
    return snippets.take_for_reply(session, row.id, market=market, actor="rep-1", conversation_id="c-1",
                                   handoff_id="h-1", now=now)


def test_a_draft_cannot_be_inserted_until_another_admin_approves_it(session: Session) -> None:
    row = snippets.create(session, _draft(_code()), actor=AUTHOR, now=NOW)
    assert row.version == 1 and row.status == "draft"
    assert row.id not in _usable_ids(session)
    with pytest.raises(snippets.SnippetUnusable, match="draft"):
        _take(session, row)
    with pytest.raises(Forbidden):
        snippets.approve(session, row.id, actor=AUTHOR, now=NOW)
    snippets.approve(session, row.id, actor=CHECKER, now=NOW)
    assert row.approved_by == CHECKER
    assert _take(session, row).body == row.body


def test_a_new_version_replaces_the_approved_one_only_when_it_is_approved(session: Session) -> None:
    code = _code()
    v1 = snippets.approve(session, snippets.create(session, _draft(code), actor=AUTHOR, now=NOW).id,
                          actor=CHECKER, now=NOW)
    v2 = snippets.create(session, _draft(code, body="Thanks for waiting: I am checking this for you."),
                         actor=AUTHOR, now=NOW)
    assert v2.version == 2
    with pytest.raises(Conflict, match="already has a draft"):
        snippets.create(session, _draft(code, body="a third wording"), actor=AUTHOR, now=NOW)
    assert v1.id in _usable_ids(session) and v2.id not in _usable_ids(session)
    snippets.approve(session, v2.id, actor=CHECKER, now=NOW)
    assert v1.status == "superseded"
    assert v1.id not in _usable_ids(session) and v2.id in _usable_ids(session)
    with pytest.raises(snippets.SnippetUnusable, match="superseded"):
        _take(session, v1)
    assert [v.version for v in snippets.list_versions(session, code)] == [2, 1]


def test_withdrawn_expired_not_yet_valid_and_other_market_snippets_cannot_be_inserted(session: Session) -> None:
    def approved(**over: object) -> StaffSnippet:
        row = snippets.create(session, _draft(_code(), **over), actor=AUTHOR, now=NOW)
        return snippets.approve(session, row.id, actor=CHECKER, now=NOW)

    expired = approved(valid_to=date(2026, 11, 23))
    future = approved(valid_from=date(2026, 12, 1))
    german = approved(market="de")
    withdrawn = approved()
    with pytest.raises(InvalidInput, match="reason"):
        snippets.withdraw(session, withdrawn.id, actor=CHECKER, now=NOW, reason="  ")
    snippets.withdraw(session, withdrawn.id, actor=CHECKER, now=NOW, reason="the programme ended")
    for row, why in ((expired, "expired on 2026-11-23"), (future, "valid only from 2026-12-01"),
                     (german, "for market DE"), (withdrawn, "withdrawn")):
        assert row.id not in _usable_ids(session)
        with pytest.raises(snippets.SnippetUnusable, match=why):
            _take(session, row)
    assert german.id in _usable_ids(session, market="DE")
    assert expired.id in _usable_ids(session, today=date(2026, 11, 22))


def test_bad_snippets_are_refused_with_every_problem_named_and_nothing_saved(session: Session) -> None:
    code = _code()
    cases = [
        (_draft(code, body="   "), "the text is empty"),
        (_draft(code, body="x" * 10_000), "longer than 2000 characters"),
        (_draft("no spaces allowed!"), "the code is"),
        (_draft(code, title=""), "the title is empty"),
        (_draft(code, market="Germany"), "two-letter country code"),
        (_draft(code, valid_from=date(2027, 1, 1), valid_to=date(2026, 1, 1)), "must be after"),
    ]
    for draft, message in cases:
        with pytest.raises(InvalidInput, match=message):
            snippets.create(session, draft, actor=AUTHOR, now=NOW)
    assert snippets.list_versions(session, code) == []


def test_every_step_is_audited_by_code_and_version_without_the_text(session: Session) -> None:
    body = f"Unique wording {uuid.uuid4().hex} for the audit test."
    row = snippets.create(session, _draft(_code(), body=body), actor=AUTHOR, now=NOW)
    snippets.approve(session, row.id, actor=CHECKER, now=NOW)
    _take(session, row)
    snippets.withdraw(session, row.id, actor=CHECKER, now=NOW, reason="replaced by a better wording")
    events = session.scalars(select(AuditEvent).where(AuditEvent.subject_id == row.id)
                             .order_by(AuditEvent.seq)).all()
    actions = [e.action for e in events]
    assert actions == ["snippet.drafted", "snippet.approved", "snippet.inserted", "snippet.withdrawn"]
    assert all(e.data["code"] == row.code and e.data["version"] == 1 for e in events)
    assert not any(body in str(e.data) or "better wording" in str(e.data) for e in events)
