"""GDPR for one HCP: export everything held about them, or erase it.

``export`` gathers every row that belongs to the person (their HCP record, channel identities,
conversations with every message, consent history, preferences and their history, feedback,
service requests, handoffs, medical inquiries, adverse events, the questions the bot logged).

``erase`` removes or pseudonymises that personal data everywhere:
- the ``hcp`` row keeps only its random id (the pseudonym retained records point to), country,
  territory and verification status, and gets ``erased_at``; channel identities are deleted;
- conversations lose their address (``erased:<id>``) and web chat session; message bodies,
  payloads, buttons and errors are replaced, except the **source messages of adverse events**:
  those and the AE narrative are retained (legal hold, COMPLIANCE.md) with the person's
  identifiers masked (``feedback.redact.redact`` plus the exact name, licence, phone numbers and
  e-mails known for them) — the clinical content stays, who said it does not;
- consent history keeps its rows (append-only) with the address pseudonymised;
- current preferences are deleted; their append-only history keeps its rows (that a change
  happened, by whom, from which message) with subject and values pseudonymised; feedback rows
  keep their scores/categories for the aggregates, comment text is replaced; service-request
  details, handoff summaries, medical inquiry question/answer and the bot's logged question
  text are replaced;
- finally a sweep over every text and JSON column of every table in the database (reflected, so
  tables added later are covered) masks any remaining occurrence of the person's identifiers —
  the append-only audit chain excepted (its ``data`` holds ids, never personal data: staff-typed
  reasons and notes live in ``staff_note``, the audit holding their id and hash).
The erasure is audited with counts only. ``forget_in_rasa`` then empties Rasa's trackers of
the person's conversations (the CLI does it after the commit). The search index and its embedding cache hold approved
content only, never HCP text; a running api's in-memory query-vector LRU (recent question texts,
bounded) is not reachable from here and is gone at its next restart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, MetaData, String, Table, Text, case, cast, delete, or_, select, true, update
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from api.audit import service as audit
from api.channels.whatsapp.models import WhatsappMedia, WhatsappSend, WhatsappThread
from api.conversations.models import Conversation, InboxItem, Message, OutboxItem, SenderType
from api.errors import Conflict, NotFound
from api.handoffs.models import Handoff
from api.hcps.models import ChannelIdentity, Hcp
from api.requests.models import ServiceRequest, ServiceRequestNote
from api.safety.models import AdverseEvent, AdverseEventMessage, Consent, MedicalInquiry
from api.staff.notes import StaffNote
from feedback.models import AnswerRating, FeedbackComment, Preference, PreferenceChange, SurveyResponse
from knowledge.models import Answer

ERASED = "[erased]"
EXPORT_FORMAT = "hcp-concierge/hcp-export/1"
# Never rewritten: the hash-chained audit log, append-only link tables, staff accounts and the
# approved library (other people's data and MLR-approved text).
SWEEP_SKIP = frozenset({"audit_event", "audit_head", "adverse_event_message", "consent", "preference_change",
                        "alembic_version", "staff_user",
                        "staff_session", "staff_login_attempt", "content_item", "content_version",
                        "content_product",
                        # CX rollups: counts per day/channel/product and conversation → product ids
                        # (feedback.rollups): no personal data or free text to mask.
                        "cx_daily", "cx_rollup_day", "cx_rollup_dirty", "conversation_product"})
# Handled row by row by ``erase``; quotes of the person's comments are looked for everywhere else.
ERASED_EXPLICITLY = frozenset({"hcp", "channel_identity", "conversation", "message", "whatsapp_thread",
                               "whatsapp_send", "whatsapp_media", "outbox", "inbox", "answer", "consent",
                               "preference", "preference_change", "feedback_comment", "answer_rating",
                               "survey_response", "service_request", "service_request_note", "handoff",
                               "medical_inquiry",
                               "adverse_event"})
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d ()-]{7,}\d")
MIN_IDENTIFIER = 4


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _row(obj: Any) -> dict[str, Any]:
    return {c.key: _plain(getattr(obj, c.key)) for c in obj.__table__.columns}


@dataclass
class _Person:
    hcp: Hcp
    conversations: list[Conversation]
    addresses: set[tuple[str, str]]
    subjects: set[str]

    @property
    def conversation_ids(self) -> list[str]:
        return [c.id for c in self.conversations]


def _person(session: Session, hcp_id: str) -> _Person:
    hcp = session.get(Hcp, hcp_id)
    if hcp is None:
        raise NotFound(f"no HCP with id {hcp_id!r}")
    addresses = {(ci.channel, ci.address) for ci in session.execute(
        select(ChannelIdentity).where(ChannelIdentity.hcp_id == hcp.id)).scalars()}
    clauses = [Conversation.hcp_id == hcp.id]
    clauses += [(Conversation.channel == ch) & (Conversation.address == addr) for ch, addr in addresses]
    convs = list(session.execute(select(Conversation).where(or_(*clauses)).order_by(Conversation.created_at))
                 .scalars())
    addresses |= {(c.channel, c.address) for c in convs if c.address}
    subjects = {f"hcp:{hcp.id}"} | {f"{ch}:{addr}" for ch, addr in addresses}
    subjects |= {f"{c.channel}:conversation:{c.id}" for c in convs if not c.address}
    return _Person(hcp, convs, addresses, subjects)


def _consent_clause(p: _Person) -> Any:
    clauses = [Consent.hcp_id == p.hcp.id]
    clauses += [(Consent.channel == ch) & (Consent.address == addr) for ch, addr in p.addresses]
    return or_(*clauses)


def _mine(model: Any, p: _Person) -> Any:
    """Rows of a feedback/preference table that belong to the person."""
    return or_(model.hcp_id == p.hcp.id, model.subject.in_(p.subjects))


def _by_conversation_or_hcp(model: Any, p: _Person) -> Any:
    clauses = [model.hcp_id == p.hcp.id]
    if p.conversation_ids:
        clauses.append(model.conversation_id.in_(p.conversation_ids))
    return or_(*clauses)


# ---------------------------------------------------------------- export


def export(session: Session, hcp_id: str, *, now: datetime, actor: str) -> dict[str, Any]:
    """Everything held about the person, as plain JSON-able data (their own messages in full)."""
    p = _person(session, hcp_id)
    cids = p.conversation_ids

    def rows(model: Any, clause: Any, order: Any) -> list[dict[str, Any]]:
        return [_row(r) for r in session.execute(select(model).where(clause).order_by(order)).scalars()]

    conversations = []
    for conv in p.conversations:
        messages = rows(Message, Message.conversation_id == conv.id, Message.id)
        conv_row = _row(conv)
        conv_row.pop("session_token_hash", None)
        conversations.append({**conv_row, "messages": messages,
                              "whatsapp_sends": rows(WhatsappSend, WhatsappSend.conversation_id == conv.id,
                                                     WhatsappSend.message_id),
                              "whatsapp_media": rows(WhatsappMedia, WhatsappMedia.message_id.in_(
                                  [m["id"] for m in messages]), WhatsappMedia.created_at)})
    events = rows(AdverseEvent, AdverseEvent.hcp_id == p.hcp.id if not cids else
                  or_(AdverseEvent.hcp_id == p.hcp.id, AdverseEvent.conversation_id.in_(cids)), AdverseEvent.day0_at)
    for ae in events:
        ae["source_message_ids"] = list(session.execute(
            select(AdverseEventMessage.message_id).where(AdverseEventMessage.adverse_event_id == ae["id"])
            .order_by(AdverseEventMessage.message_id)).scalars())
    data: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "generated_at": now.isoformat(),
        "hcp": _row(p.hcp),
        "channel_identities": rows(ChannelIdentity, ChannelIdentity.hcp_id == p.hcp.id, ChannelIdentity.created_at),
        "conversations": conversations,
        "consent_history": rows(Consent, _consent_clause(p), Consent.id),
        "preferences": rows(Preference, _mine(Preference, p), Preference.name),
        "preference_history": rows(PreferenceChange, _mine(PreferenceChange, p), PreferenceChange.id),
        "answer_ratings": rows(AnswerRating, _mine(AnswerRating, p), AnswerRating.created_at),
        "surveys": rows(SurveyResponse, _mine(SurveyResponse, p), SurveyResponse.asked_at),
        "comments": rows(FeedbackComment, _mine(FeedbackComment, p), FeedbackComment.created_at),
        "service_requests": rows(ServiceRequest, _by_conversation_or_hcp(ServiceRequest, p),
                                 ServiceRequest.created_at),
        "service_request_notes": rows(ServiceRequestNote, ServiceRequestNote.service_request_id.in_(
            select(ServiceRequest.id).where(_by_conversation_or_hcp(ServiceRequest, p))),
            ServiceRequestNote.created_at),
        "handoffs": rows(Handoff, _by_conversation_or_hcp(Handoff, p), Handoff.created_at),
        "medical_inquiries": rows(MedicalInquiry, _by_conversation_or_hcp(MedicalInquiry, p),
                                  MedicalInquiry.created_at),
        "adverse_events": events,
        "questions": rows(Answer, Answer.conversation_id.in_(cids), Answer.created_at) if cids else [],
    }
    audit.record(session, action="hcp.exported", subject_type="hcp", subject_id=p.hcp.id, actor_type="staff",
                 actor_id=actor, data={k: len(v) for k, v in data.items() if isinstance(v, list)}, at=now)
    return data


# ---------------------------------------------------------------- erase


@dataclass
class ErasureReport:
    hcp_id: str
    changed: dict[str, int] = field(default_factory=dict)
    retained_legal_hold: dict[str, int] = field(default_factory=dict)
    conversation_ids: list[str] = field(default_factory=list)  # whose Rasa trackers to empty

    def add(self, table: str, n: int) -> None:
        if n:
            self.changed[table] = self.changed.get(table, 0) + n


def _identifiers(session: Session, p: _Person) -> list[str]:
    """The person's identifiers as written anywhere: full name, licence, phone numbers, channel
    addresses, e-mails and phone numbers found in their own messages."""
    found: set[str] = set()
    if p.hcp.name:
        found.add(p.hcp.name)
    if p.hcp.licence_id:
        found.add(p.hcp.licence_id)
    for _ch, addr in p.addresses:
        found.add(addr)
        bare = addr.split(":", 1)[-1]
        found.add(bare)
        if bare.startswith("+"):
            found.add(bare[1:])
    if p.conversation_ids:
        for body in session.execute(select(Message.body).where(
                Message.conversation_id.in_(p.conversation_ids), Message.direction == "in")).scalars():
            found |= set(_EMAIL.findall(body or ""))
            found |= {m.strip() for m in _PHONE.findall(body or "") if sum(ch.isdigit() for ch in m) >= 9}
    return sorted((s for s in found if len(s) >= MIN_IDENTIFIER), key=len, reverse=True)


def _redactor() -> Any:
    try:
        from feedback.redact import redact
    except ImportError:  # pragma: no cover - the redactor ships with feedback/
        return lambda text: text
    return redact


def pseudonymise(text: str, identifiers: Iterable[str]) -> str:
    """Mask the person in a retained text: their exact identifiers, then every pattern redact knows."""
    for ident in identifiers:
        text = text.replace(ident, ERASED)
    result: str = _redactor()(text)
    return result


def erase(session: Session, hcp_id: str, *, now: datetime, actor: str) -> ErasureReport:
    p = _person(session, hcp_id)
    if p.hcp.erased_at is not None:
        raise Conflict(f"HCP {hcp_id} was already erased on {p.hcp.erased_at.date().isoformat()}")
    report = ErasureReport(p.hcp.id, conversation_ids=list(p.conversation_ids))
    idents = _identifiers(session, p)
    # In the person's own retained texts the parts of their name are masked too ("Dr Smith").
    own_idents = sorted(set(idents) | {w for w in (p.hcp.name or "").split() if len(w) >= MIN_IDENTIFIER},
                        key=len, reverse=True)
    cids = p.conversation_ids
    own = f"hcp:{p.hcp.id}"

    def run(table: str, stmt: Any) -> None:
        result = session.execute(stmt.execution_options(synchronize_session=False))
        report.add(table, int(result.rowcount))  # type: ignore[attr-defined]

    # Adverse events and their source messages: retained, pseudonymised.
    ae_clause = AdverseEvent.hcp_id == p.hcp.id
    if cids:
        ae_clause = or_(ae_clause, AdverseEvent.conversation_id.in_(cids))
    held_messages: set[int] = set()
    for ae in session.execute(select(AdverseEvent).where(ae_clause)).scalars():
        ae.raw_text = pseudonymise(ae.raw_text, own_idents)
        ae.updated_at = now
        held_messages |= set(session.execute(select(AdverseEventMessage.message_id).where(
            AdverseEventMessage.adverse_event_id == ae.id)).scalars())
        report.retained_legal_hold["adverse_event"] = report.retained_legal_hold.get("adverse_event", 0) + 1
    for msg in session.execute(select(Message).where(Message.id.in_(held_messages))).scalars():
        msg.body = pseudonymise(msg.body, own_idents)
        msg.sender_id = None
    report.retained_legal_hold["message"] = len(held_messages)
    session.flush()

    if cids:
        in_convs = Message.conversation_id.in_(cids)
        run("message", update(Message).where(in_convs, Message.id.not_in(held_messages) if held_messages else true())
            .values(body=ERASED, payload=None, buttons=None, error=None))
        run("message", update(Message).where(in_convs, Message.sender_type == SenderType.hcp).values(sender_id=None))
        run("whatsapp_send", update(WhatsappSend).where(WhatsappSend.conversation_id.in_(cids))
            .values(content_variables=None, held_reason=None))
        media_of = select(Message.id).where(in_convs).scalar_subquery()
        run("whatsapp_media", update(WhatsappMedia).where(WhatsappMedia.message_id.in_(media_of))
            .values(url=None, data=None))
        run("outbox", update(OutboxItem).where(OutboxItem.conversation_id.in_(cids)).values(last_error=None))
        run("inbox", update(InboxItem).where(InboxItem.conversation_id.in_(cids)).values(error=None, screen=None))
        run("answer", update(Answer).where(Answer.conversation_id.in_(cids)).values(query=ERASED))
        for conv in p.conversations:
            pseudonym = f"erased:{conv.id}"
            if conv.address:
                run("whatsapp_thread", update(WhatsappThread).where(WhatsappThread.conversation_id == conv.id)
                    .values(address=pseudonym))
            conv.address = pseudonym if conv.address else None
            conv.session_token_hash = None
            conv.hcp_id = p.hcp.id
        report.add("conversation", len(p.conversations))
        session.flush()

    for i, row in enumerate(session.execute(select(Consent).where(_consent_clause(p)).order_by(Consent.id))
                            .scalars()):
        if not row.address.startswith("erased:"):
            row.address = f"erased:{p.hcp.id}:{i}"
            report.add("consent", 1)
    session.flush()
    run("channel_identity", delete(ChannelIdentity).where(ChannelIdentity.hcp_id == p.hcp.id))
    if p.addresses:
        run("channel_identity", delete(ChannelIdentity).where(or_(*[
            (ChannelIdentity.channel == ch) & (ChannelIdentity.address == addr) for ch, addr in p.addresses])))
    run("preference", delete(Preference).where(_mine(Preference, p)))
    # The history is append-only: its rows stay (a change happened), pseudonymised.
    run("preference_change", update(PreferenceChange).where(_mine(PreferenceChange, p))
        .values(subject=f"erased:{p.hcp.id}", old_value=case_erased(PreferenceChange.old_value), new_value=ERASED))
    comments = list(session.execute(select(FeedbackComment.text).where(_mine(FeedbackComment, p))).scalars())
    run("feedback_comment", update(FeedbackComment).where(_mine(FeedbackComment, p))
        .values(text=ERASED, subject=own, hcp_id=p.hcp.id))
    run("answer_rating", update(AnswerRating).where(_mine(AnswerRating, p)).values(subject=own, hcp_id=p.hcp.id))
    run("survey_response", update(SurveyResponse).where(_mine(SurveyResponse, p))
        .values(subject=own, hcp_id=p.hcp.id))
    request_ids = select(ServiceRequest.id).where(_by_conversation_or_hcp(ServiceRequest, p))
    run("service_request_note", update(ServiceRequestNote)
        .where(ServiceRequestNote.service_request_id.in_(request_ids)).values(text=ERASED))
    run("service_request", update(ServiceRequest).where(_by_conversation_or_hcp(ServiceRequest, p))
        .values(details={"erased": True}, outcome_reason=case_erased(ServiceRequest.outcome_reason)))
    run("handoff", update(Handoff).where(_by_conversation_or_hcp(Handoff, p)).values(summary=ERASED))
    run("medical_inquiry", update(MedicalInquiry).where(_by_conversation_or_hcp(MedicalInquiry, p))
        .values(text=ERASED, response=case_erased(MedicalInquiry.response), close_reason=None))
    # Staff-typed reasons and notes about this HCP, their handoffs and inquiries (the audit holds only a
    # reference and hash). Notes on adverse events stay under the legal hold, masked by the sweep below.
    run("staff_note", update(StaffNote).where(or_(
        (StaffNote.subject_type == "hcp") & (StaffNote.subject_id == p.hcp.id),
        (StaffNote.subject_type == "handoff")
        & StaffNote.subject_id.in_(select(Handoff.id).where(_by_conversation_or_hcp(Handoff, p))),
        (StaffNote.subject_type == "medical_inquiry")
        & StaffNote.subject_id.in_(select(MedicalInquiry.id).where(_by_conversation_or_hcp(MedicalInquiry, p))),
    )).values(text=ERASED))
    session.flush()

    # Derived copies elsewhere (analytics, theme examples, tables added later): mask what is left.
    _redact = _redactor()
    quotes = {c for c in comments if c and c != ERASED} | {_redact(c) for c in comments if c and c != ERASED}
    for table, n in sweep_identifiers(session, idents).items():
        report.add(table, n)
    long_quotes = sorted((q for q in quotes if len(q) >= 12), key=len, reverse=True)
    for table, n in sweep_identifiers(session, long_quotes, skip=SWEEP_SKIP | ERASED_EXPLICITLY).items():
        report.add(table, n)

    hcp = p.hcp
    hcp.name = None
    hcp.licence_id = None
    hcp.specialty = None
    hcp.assigned_rep_id = None
    hcp.assigned_msl_id = None
    hcp.erased_at = now
    report.add("hcp", 1)
    session.flush()
    audit.record(session, action="hcp.erased", subject_type="hcp", subject_id=hcp.id, actor_type="staff",
                 actor_id=actor, data={"changed": report.changed, "retained_legal_hold": report.retained_legal_hold},
                 at=now)
    return report


def case_erased(column: Any) -> Any:
    """NULL stays NULL; anything else becomes the erased marker."""
    return case((column.is_(None), None), else_=ERASED)


def _texty(col_type: TypeEngine[Any]) -> str | None:
    if isinstance(col_type, JSON):
        return "json"
    if isinstance(col_type, String | Text):
        return "text"
    return None


def sweep_identifiers(session: Session, needles: list[str], *, skip: frozenset[str] = SWEEP_SKIP) -> dict[str, int]:
    """Mask every occurrence of ``needles`` in every text/JSON column of every table (reflected
    from the database), the audit chain and append-only link tables excepted."""
    if not needles:
        return {}
    meta = MetaData()
    meta.reflect(bind=session.connection())
    changed: dict[str, int] = {}
    for table in meta.sorted_tables:
        if table.name in skip:
            continue
        pk = list(table.primary_key.columns)
        cols = [(c, kind) for c in table.columns if (kind := _texty(c.type)) is not None]
        if not pk or not cols:
            continue
        n = _sweep_table(session, table, pk, cols, needles)
        if n:
            changed[table.name] = n
    return changed


def _sweep_table(session: Session, table: Table, pk: list[Any], cols: list[tuple[Any, str]],
                 needles: list[str]) -> int:
    hits = or_(*[cast(c, Text).contains(n, autoescape=True) for c, _k in cols for n in needles])
    rows = session.execute(select(*pk, *[c for c, _k in cols]).where(hits)).all()
    for row in rows:
        values: dict[str, Any] = {}
        for i, (col, kind) in enumerate(cols):
            value = row[len(pk) + i]
            masked = _mask(value, needles) if kind == "json" else _mask_text(value, needles)
            if masked != value:
                values[col.name] = masked
        if values:
            key = [c == row[j] for j, c in enumerate(pk)]
            session.execute(update(table).where(*key).values(**values))
    return len(rows)


def _mask_text(value: Any, needles: list[str]) -> Any:
    if not isinstance(value, str):
        return value
    for n in needles:
        value = value.replace(n, ERASED)
    return value


def _mask(value: Any, needles: list[str]) -> Any:
    if isinstance(value, str):
        return _mask_text(value, needles)
    if isinstance(value, list):
        return [_mask(v, needles) for v in value]
    if isinstance(value, dict):
        return {_mask_text(k, needles): _mask(v, needles) for k, v in value.items()}
    return value




# ---------------------------------------------------------------- Rasa's copy


@dataclass
class RasaForget:
    cleared: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def forget_in_rasa(base_url: str, token: str, conversation_ids: Iterable[str], *, timeout: float = 5.0,
                   transport: Any = None) -> RasaForget:
    """Empty Rasa's tracker of each conversation (the sender id is the conversation id): its
    tracker store holds the messages and slots (name, licence number) of every turn. Rasa's HTTP
    API replaces a tracker's events with the list it is given — here, none."""
    import httpx

    result = RasaForget()
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport) as client:
        for cid in conversation_ids:
            try:
                resp = client.put(f"/conversations/{cid}/tracker/events", params={"token": token}, json=[])
            except httpx.HTTPError as exc:
                result.failed[cid] = type(exc).__name__
                continue
            if resp.status_code == 200:
                result.cleared.append(cid)
            else:
                result.failed[cid] = f"HTTP {resp.status_code}"
    return result
