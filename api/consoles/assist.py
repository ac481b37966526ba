"""Agent assist in the Inbox console: suggested approved replies for the HCP's recent messages
(sent verbatim through the existing ``…/content`` route) and canned staff snippets for the reply
box (sent through the existing ``…/reply`` route as the staff member's own words).

JSON for the handoff page's script, at /api/staff/inbox/{handoff_id}/suggestions and …/snippets.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.audit import service as audit
from api.consoles.inbox import Inbox
from api.content import recipient_for
from api.conversations.models import Conversation
from api.db import read_only, unit_of_work
from api.handoffs import service as handoffs
from api.handoffs.errors import NotHolder
from api.handoffs.models import HandoffStatus
from api.handoffs.suggest import record_shown, suggestions_for_handoff
from api.state import app_state
from knowledge import snippets

router = APIRouter()


class SuggestionRead(BaseModel):
    content_id: str
    version: int
    title: str
    product: str
    kind: str
    approval_code: str
    excerpt: str
    score: float
    message_id: int


class SuggestionsRead(BaseModel):
    items: list[SuggestionRead]


class SnippetRead(BaseModel):
    id: str
    code: str
    version: int
    title: str
    body: str


class SnippetsRead(BaseModel):
    items: list[SnippetRead]


@router.get("/api/staff/inbox/{handoff_id}/suggestions")
def suggestions_json(request: Request, handoff_id: str, ident: Inbox) -> SuggestionsRead:
    from knowledge.service import get_knowledge_base

    state = app_state(request)
    kb = get_knowledge_base(state.settings.resolved_index_dir)
    now = state.clock.now()
    # Ranking reads only: on SQLite a read-only session does not hold the write lock meanwhile.
    with read_only(state.engine) as session:
        found = suggestions_for_handoff(session, kb, handoff_id, ident, now=now,
                                        default_market=state.settings.default_market)
    with unit_of_work(state.session_factory) as session:
        record_shown(session, handoff_id, ident, now, found)
    return SuggestionsRead(items=[SuggestionRead(**s.as_dict()) for s in found])


def _held_conversation(request: Request, handoff_id: str, ident: Inbox) -> tuple[str, str]:
    """(conversation id, the HCP's market) of a handoff this staff member holds."""
    state = app_state(request)
    with unit_of_work(state.session_factory) as session:
        h = handoffs.get_for_staff(session, handoff_id, ident)
        if h.status != HandoffStatus.claimed or h.claimed_by != ident.id:
            raise NotHolder("snippets are for the colleague who holds this conversation; claim it first")
        conv = session.get(Conversation, h.conversation_id)
        assert conv is not None
        return conv.id, recipient_for(session, conv, state.settings.default_market).market


@router.get("/api/staff/inbox/{handoff_id}/snippets")
def snippets_json(request: Request, handoff_id: str, ident: Inbox) -> SnippetsRead:
    state = app_state(request)
    _conv_id, market = _held_conversation(request, handoff_id, ident)
    with unit_of_work(state.session_factory) as session:
        rows = snippets.list_usable(session, market, state.clock.now().date())
        return SnippetsRead(items=[SnippetRead(id=r.id, code=r.code, version=r.version, title=r.title, body=r.body)
                                   for r in rows])


@router.post("/api/staff/inbox/{handoff_id}/snippets/{snippet_id}/insert")
def snippet_insert_json(request: Request, handoff_id: str, snippet_id: str, ident: Inbox) -> SnippetRead:
    """The snippet's text for the reply box, if it may still be used (approved, in date, this market)."""
    state = app_state(request)
    conv_id, market = _held_conversation(request, handoff_id, ident)
    now = state.clock.now()
    try:
        with unit_of_work(state.session_factory) as session:
            row = snippets.take_for_reply(session, snippet_id[:32], market=market, actor=ident.id,
                                          conversation_id=conv_id, handoff_id=handoff_id, now=now)
            return SnippetRead(id=row.id, code=row.code, version=row.version, title=row.title, body=row.body)
    except snippets.SnippetUnusable as exc:
        with unit_of_work(state.session_factory) as session:
            audit.record(session, action="snippet.insert_refused", subject_type="staff_snippet",
                         subject_id=snippet_id[:32], actor_type="staff", actor_id=ident.id,
                         data={"handoff_id": handoff_id, **(exc.detail if isinstance(exc.detail, dict) else {})},
                         at=now)
        raise
