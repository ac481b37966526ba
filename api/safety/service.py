"""What the safety screen's findings do: AE / quality cases, medical inquiries, consent.

``apply`` runs inside the worker's first transaction for every inbound message (any
conversation state), so a case exists — with day 0 = the message's receipt time — before any
reply is produced. It flushes, never commits.

Case linking: a possible AE in a conversation that already has an open case of the same kind
whose last source message is less than 24 h old is a follow-up of that case (linked, criteria
merged, day 0 kept), not a new case. A non-AE message in that window that supplies a missing
minimum criterion after we asked for it (e.g. "she is 54") is linked the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.drafts import ReplyDraft
from api.conversations.models import Conversation, Message
from api.errors import InvalidInput, NotFound
from api.safety import duplicates, recall, rules
from api.safety.models import (
    REQUIRED_CRITERIA,
    AdverseEvent,
    AdverseEventMessage,
    AeKind,
    AeStatus,
    Consent,
    ConsentAction,
    ConsentPurpose,
    InquiryStatus,
    MedicalInquiry,
    SafetyCounter,
    Seriousness,
)
from api.safety.screen import ScreenResult

log = logging.getLogger("concierge.safety")

SERIOUS_DUE_DAYS = 15
NON_SERIOUS_DUE_DAYS = 90
FOLLOW_UP_WINDOW = timedelta(hours=24)
OPEN_STATUSES = (AeStatus.new, AeStatus.triaged)

# STOP withdraws every purpose; START restores service and medical messages only — marketing
# needs its own explicit opt-in.
OPT_OUT_PURPOSES = (ConsentPurpose.service, ConsentPurpose.medical, ConsentPurpose.marketing)
OPT_IN_PURPOSES = (ConsentPurpose.service, ConsentPurpose.medical)

CRITERIA_QUESTIONS = {
    "reporter": "your name and a way to contact you",
    "patient": "the patient's age, sex or initials (no full name, please)",
    "product": "which of our products was involved",
    "event": "what happened",
}

OPT_OUT_TEXT = (
    "You have been unsubscribed and will not receive further messages from us on this channel. "
    "Reply START at any time to resume."
)
OPT_IN_TEXT = (
    "Welcome back — you will receive messages from us again. Reply STOP at any time to unsubscribe "
    "or HELP for help."
)
# A message after STOP (and before START): the HCP is told once more how to resume; nothing else is
# done with it except recording an adverse event, which is never dropped.
STILL_OPTED_OUT_TEXT = (
    "You have unsubscribed, so we do not reply here or pass on requests. Reply START to resume. "
    "A report of a side effect or a product problem is still passed to our safety team."
)
HELP_TEXT = (
    "This is the HCP Concierge for healthcare professionals. You can ask about our medicines, "
    "request samples, a meeting or a callback, or ask to speak to a person. To report a side "
    "effect or a product problem, just describe it here. Reply STOP to unsubscribe, START to "
    "resume. In an emergency, contact your local emergency services."
)


@dataclass
class SafetyOutcome:
    replies: list[ReplyDraft]
    # True: do not pass the message on to Rasa (opt-out/in, help, off-label → Medical)
    stop_processing: bool
    adverse_event_id: str | None = None
    medical_inquiry_id: str | None = None
    consent_changed: list[str] = field(default_factory=list)
    # The HCP asked for a person in words: the turn hands over even when Rasa cannot be asked.
    handoff_requested: bool = False
    # The form question the bot had just asked, if any (the message is probably its answer).
    asked: str | None = None


@dataclass(frozen=True)
class Criteria:
    reporter: bool
    patient: bool
    product: bool
    event: bool

    def missing(self, kind: str = AeKind.adverse_event) -> list[str]:
        required = REQUIRED_CRITERIA.get(kind, REQUIRED_CRITERIA[AeKind.adverse_event])
        return [name for name in required if not getattr(self, name)]


# ---------------------------------------------------------------- pure rules


def due_at(day0: datetime, seriousness: str) -> datetime:
    """Reporting deadline: 15 calendar days when serious — or not yet assessed — else 90 (EU)."""
    days = NON_SERIOUS_DUE_DAYS if seriousness == Seriousness.non_serious else SERIOUS_DUE_DAYS
    return day0 + timedelta(days=days)


def case_kind(result: ScreenResult) -> AeKind:
    return AeKind.quality_complaint if result.is_quality_complaint_only else AeKind.adverse_event


def assess_criteria(text: str, *, result: ScreenResult, conversation: Conversation) -> Criteria:
    """Which of the four minimum criteria this message (and its channel) establishes."""
    norm = rules.normalise(text)
    return Criteria(
        # A known HCP or a reachable channel address is an identifiable, contactable reporter.
        reporter=bool(conversation.hcp_id or conversation.address or rules.has_reporter_identifier(norm)),
        patient=rules.has_patient_identifier(norm),
        product=bool(result.products),
        event=result.adverse_event,
    )


def missing_criteria(case: AdverseEvent) -> list[str]:
    return case.missing_criteria


def ask_missing_text(missing: list[str]) -> str:
    asks = [CRITERIA_QUESTIONS[m] for m in missing]
    listed = asks[0] if len(asks) == 1 else ", ".join(asks[:-1]) + " and " + asks[-1]
    return (
        f"To complete the report, could you tell us {listed}? "
        "Please carry on with anything else you need in the meantime — this does not hold anything up."
    )


def _ack_text(case: AdverseEvent, *, new: bool) -> str:
    if case.kind == AeKind.quality_complaint:
        if new:
            return (
                f"Thank you for telling us. We have recorded a product quality complaint (reference "
                f"{case.reference}) for our quality team. If you can, please keep the product and its "
                "packaging; they may contact you."
            )
        return f"Thank you — we have added this to your product quality complaint {case.reference}."
    if new:
        return (
            "Thank you for telling us. This may be an adverse event, so we have passed it to our "
            f"Patient Safety team (reference {case.reference}). They may contact you for details."
        )
    return f"Thank you — we have added this to the safety report {case.reference}."


# ---------------------------------------------------------------- references


def _next_reference(session: Session, prefix: str, now: datetime) -> str:
    key = f"{prefix}-{now.year}"
    bumped = session.execute(
        update(SafetyCounter).where(SafetyCounter.key == key).values(value=SafetyCounter.value + 1)
    )
    if bumped.rowcount == 0:  # type: ignore[attr-defined]
        try:
            with session.begin_nested():
                session.add(SafetyCounter(key=key, value=1))
            return f"{key}-{1:06d}"
        except IntegrityError:  # another writer created the year's counter first
            session.execute(
                update(SafetyCounter).where(SafetyCounter.key == key).values(value=SafetyCounter.value + 1)
            )
    value = session.execute(
        select(SafetyCounter.value).where(SafetyCounter.key == key).execution_options(populate_existing=True)
    ).scalar_one()
    return f"{key}-{value:06d}"


# ---------------------------------------------------------------- adverse events


def _open_cases(session: Session, conversation_id: str, kinds: tuple[str, ...],
                now: datetime) -> dict[str, AdverseEvent]:
    """Per kind, the conversation's newest open case with a source message in the last 24 h: one query.

    "A source message in the last 24 h" is asked as EXISTS over that case's own links (the same as
    "its newest link is less than 24 h old"), so the database reads the conversation's cases and their
    links, not an aggregate over every case's links."""
    recent_link = (
        select(AdverseEventMessage.id)
        .where(AdverseEventMessage.adverse_event_id == AdverseEvent.id,
               AdverseEventMessage.created_at >= now - FOLLOW_UP_WINDOW)
        .exists()
    )
    rows = session.execute(
        select(AdverseEvent)
        .where(
            AdverseEvent.conversation_id == conversation_id,
            AdverseEvent.kind.in_(kinds),
            AdverseEvent.status.in_([s.value for s in OPEN_STATUSES]),
            recent_link,
        )
        .order_by(AdverseEvent.created_at.desc())
    ).scalars()
    found: dict[str, AdverseEvent] = {}
    for case in rows:
        found.setdefault(case.kind, case)
    return found


def _open_case(session: Session, conversation_id: str, kind: str, now: datetime) -> AdverseEvent | None:
    """The conversation's open case of this kind with a source message in the last 24 h."""
    return _open_cases(session, conversation_id, (kind,), now).get(kind)


def _link(session: Session, case: AdverseEvent, message: Message, now: datetime) -> None:
    session.add(AdverseEventMessage(adverse_event_id=case.id, message_id=message.id, created_at=now))


def _merge_seriousness(case: AdverseEvent, result: ScreenResult) -> None:
    if result.serious and case.seriousness != Seriousness.serious:
        case.seriousness = Seriousness.serious
        case.due_at = due_at(case.day0_at, Seriousness.serious)
    if result.serious_terms:
        case.serious_terms = sorted(set(case.serious_terms or []) | set(result.serious_terms))


def _merge_criteria(case: AdverseEvent, criteria: Criteria) -> list[str]:
    """OR the new evidence into the case; return the criteria that became known."""
    gained: list[str] = []
    for name in ("reporter", "patient", "product", "event"):
        attr = f"has_{name}"
        if getattr(criteria, name) and not getattr(case, attr):
            setattr(case, attr, True)
            gained.append(name)
    return gained


def create_or_link_case(
    session: Session, *, conversation: Conversation, message: Message, result: ScreenResult, now: datetime
) -> tuple[AdverseEvent, bool]:
    """Record a possible AE / quality complaint from ``message``; returns (case, created)."""
    kind = case_kind(result)
    criteria = assess_criteria(message.body, result=result, conversation=conversation)
    day0 = message.created_at or now
    existing = _open_case(session, conversation.id, kind, now)
    if existing is not None:
        gained = _merge_criteria(existing, criteria)
        existing.products = sorted(set(existing.products or []) | set(result.products))
        existing.categories = sorted(set(existing.categories or []) | set(result.ae_categories))
        existing.raw_text = f"{existing.raw_text}\n---\n{message.body}"
        existing.ae_score = max(existing.ae_score or 0.0, result.ae_score)
        _merge_seriousness(existing, result)
        existing.updated_at = now
        _link(session, existing, message, now)
        session.flush()
        audit.record(
            session, action="adverse_event.linked", subject_type="adverse_event", subject_id=existing.id,
            data={"message_id": message.id, "conversation_id": conversation.id, "gained": gained,
                  "seriousness": existing.seriousness, "categories": list(result.ae_categories)},
            at=now,
        )
        # New evidence (a product, an event) can make it match an earlier case.
        duplicates.flag_possible_duplicates(session, existing, now)
        return existing, False
    seriousness = Seriousness.serious if result.serious else Seriousness.unknown
    prefix = "PQC" if kind == AeKind.quality_complaint else "AE"
    case = AdverseEvent(
        reference=_next_reference(session, prefix, day0),
        kind=kind,
        conversation_id=conversation.id,
        hcp_id=conversation.hcp_id,
        raw_text=message.body,
        day0_at=day0,
        due_at=due_at(day0, seriousness),
        seriousness=seriousness,
        serious_terms=list(result.serious_terms),
        has_reporter=criteria.reporter,
        has_patient=criteria.patient,
        has_product=criteria.product,
        has_event=criteria.event,
        products=list(result.products),
        categories=list(result.ae_categories),
        ae_score=result.ae_score,
        status=AeStatus.new,
        legal_hold=True,
        missing_asked=False,
        channel=conversation.channel,
        created_at=now,
    )
    session.add(case)
    session.flush()
    _link(session, case, message, now)
    session.flush()
    audit.record(
        session, action="adverse_event.created", subject_type="adverse_event", subject_id=case.id,
        data={"reference": case.reference, "kind": kind, "message_id": message.id,
              "conversation_id": conversation.id, "day0_at": day0.isoformat(),
              "due_at": case.due_at.isoformat(), "seriousness": seriousness,
              "categories": list(result.ae_categories), "products": list(result.products),
              "missing": missing_criteria(case)},
        at=now,
    )
    duplicates.flag_possible_duplicates(session, case, now)
    return case, True


def record_staff_mention(
    session: Session, *, conversation: Conversation, text: str, result: ScreenResult, staff_id: str,
    now: datetime, message: Message | None = None,
) -> tuple[AdverseEvent, bool]:
    """An adverse event a staff member mentioned in a reply, captured as if reported: day 0 = now,
    source ``staff``. ``message``: the reply when it went out (linked as the source); None when the
    reply was refused — the case keeps the text, so the mention is never lost. An open case of the
    conversation (source message in the last 24 h) takes it as a follow-up instead."""
    kind = case_kind(result)
    norm = rules.normalise(text)
    existing = _open_case(session, conversation.id, kind, now)
    if existing is not None:
        existing.raw_text = f"{existing.raw_text}\n--- staff {staff_id}:\n{text}"
        existing.products = sorted(set(existing.products or []) | set(result.products))
        existing.categories = sorted(set(existing.categories or []) | set(result.ae_categories))
        _merge_criteria(existing, Criteria(reporter=True, patient=rules.has_patient_identifier(norm),
                                           product=bool(result.products), event=True))
        _merge_seriousness(existing, result)
        existing.updated_at = now
        if message is not None:
            _link(session, existing, message, now)
        session.flush()
        audit.record(
            session, action="adverse_event.staff_mention", subject_type="adverse_event", subject_id=existing.id,
            actor_type="staff", actor_id=staff_id,
            data={"reference": existing.reference, "conversation_id": conversation.id, "linked": True,
                  "message_id": message.id if message is not None else None,
                  "categories": list(result.ae_categories)}, at=now,
        )
        return existing, False
    seriousness = Seriousness.serious if result.serious else Seriousness.unknown
    case = AdverseEvent(
        reference=_next_reference(session, "PQC" if kind == AeKind.quality_complaint else "AE", now),
        kind=kind, conversation_id=conversation.id, hcp_id=conversation.hcp_id, raw_text=text,
        day0_at=now, due_at=due_at(now, seriousness), seriousness=seriousness,
        serious_terms=list(result.serious_terms),
        # The staff member is an identifiable, contactable reporter.
        has_reporter=True, has_patient=rules.has_patient_identifier(norm), has_product=bool(result.products),
        has_event=True, products=list(result.products), categories=list(result.ae_categories),
        ae_score=result.ae_score, status=AeStatus.new, legal_hold=True, missing_asked=False,
        channel=conversation.channel, created_at=now, source="staff", reported_by_staff_id=staff_id,
    )
    session.add(case)
    session.flush()
    if message is not None:
        _link(session, case, message, now)
        session.flush()
    audit.record(
        session, action="adverse_event.created", subject_type="adverse_event", subject_id=case.id,
        actor_type="staff", actor_id=staff_id,
        data={"reference": case.reference, "kind": kind, "source": "staff",
              "message_id": message.id if message is not None else None, "conversation_id": conversation.id,
              "day0_at": now.isoformat(), "due_at": case.due_at.isoformat(), "seriousness": seriousness,
              "categories": list(result.ae_categories), "products": list(result.products),
              "missing": missing_criteria(case)},
        at=now,
    )
    duplicates.flag_possible_duplicates(session, case, now)
    return case, True


def _follow_up_answer(
    session: Session, *, conversation: Conversation, message: Message, result: ScreenResult, now: datetime
) -> AdverseEvent | None:
    """A non-AE reply that supplies a criterion we asked for is evidence for the open case."""
    kinds = (AeKind.adverse_event, AeKind.quality_complaint)
    open_cases = _open_cases(session, conversation.id, kinds, now)
    for kind in kinds:
        case = open_cases.get(kind)
        if case is None or not case.missing_asked or not missing_criteria(case):
            continue
        norm = rules.normalise(message.body)
        supplied = Criteria(
            reporter=rules.has_reporter_identifier(norm),
            patient=rules.has_patient_identifier(norm),
            product=bool(result.products),
            event=False,
        )
        wanted = set(missing_criteria(case))
        gained_any = any(getattr(supplied, name) for name in wanted)
        if not gained_any:
            continue
        gained = [g for g in _merge_criteria(case, supplied) if g in wanted]
        if result.products:
            case.products = sorted(set(case.products or []) | set(result.products))
        case.raw_text = f"{case.raw_text}\n---\n{message.body}"
        case.updated_at = now
        _link(session, case, message, now)
        session.flush()
        audit.record(
            session, action="adverse_event.follow_up", subject_type="adverse_event", subject_id=case.id,
            data={"message_id": message.id, "gained": gained, "missing": missing_criteria(case)}, at=now,
        )
        return case
    return None


def classify_seriousness(
    session: Session, case_id: str, *, seriousness: str, actor_id: str, now: datetime
) -> AdverseEvent:
    """A safety reviewer's assessment; the deadline follows it (15 vs 90 days from day 0)."""
    case = session.get(AdverseEvent, case_id)
    if case is None:
        raise NotFound("adverse event not found")
    try:
        value = Seriousness(seriousness)
    except ValueError as exc:
        raise InvalidInput(f"unknown seriousness {seriousness!r}") from exc
    case.seriousness = value
    case.due_at = due_at(case.day0_at, value)
    if case.status == AeStatus.new:
        case.status = AeStatus.triaged
    case.updated_at = now
    session.flush()
    audit.record(
        session, action="adverse_event.classified", subject_type="adverse_event", subject_id=case.id,
        actor_type="staff", actor_id=actor_id,
        data={"seriousness": value, "due_at": case.due_at.isoformat()}, at=now,
    )
    return case


def update_status(session: Session, case_id: str, *, status: str, actor_id: str, now: datetime) -> AdverseEvent:
    case = session.get(AdverseEvent, case_id)
    if case is None:
        raise NotFound("adverse event not found")
    try:
        value = AeStatus(status)
    except ValueError as exc:
        raise InvalidInput(f"unknown status {status!r}") from exc
    case.status = value
    case.updated_at = now
    session.flush()
    audit.record(
        session, action="adverse_event.status", subject_type="adverse_event", subject_id=case.id,
        actor_type="staff", actor_id=actor_id, data={"status": value}, at=now,
    )
    return case


def list_open_cases(session: Session, *, kind: str | None = None) -> list[AdverseEvent]:
    """The safety (or quality) queue, most urgent deadline first."""
    query = select(AdverseEvent).where(AdverseEvent.status.in_([s.value for s in OPEN_STATUSES]))
    if kind is not None:
        query = query.where(AdverseEvent.kind == kind)
    return list(session.execute(query.order_by(AdverseEvent.due_at, AdverseEvent.created_at)).scalars())


def source_message_ids(session: Session, case_id: str) -> list[int]:
    return list(session.execute(
        select(AdverseEventMessage.message_id)
        .where(AdverseEventMessage.adverse_event_id == case_id)
        .order_by(AdverseEventMessage.message_id)
    ).scalars())


# ---------------------------------------------------------------- medical inquiries


def create_medical_inquiry(
    session: Session, *, conversation: Conversation, message: Message, result: ScreenResult, now: datetime
) -> MedicalInquiry:
    inquiry = MedicalInquiry(
        reference=_next_reference(session, "MI", now),
        text=message.body,
        product=result.products[0] if result.products else None,
        reasons=list(result.off_label_reasons),
        status=InquiryStatus.open,
        channel=conversation.channel,
        conversation_id=conversation.id,
        message_id=message.id,
        hcp_id=conversation.hcp_id,
        market=conversation.market,
        created_at=now,
    )
    session.add(inquiry)
    session.flush()
    audit.record(
        session, action="medical_inquiry.created", subject_type="medical_inquiry", subject_id=inquiry.id,
        data={"reference": inquiry.reference, "product": inquiry.product, "reasons": inquiry.reasons,
              "message_id": message.id, "conversation_id": conversation.id},
        at=now,
    )
    return inquiry


def answer_medical_inquiry(
    session: Session, inquiry_id: str, *, response: str, reviewer_id: str, now: datetime
) -> MedicalInquiry:
    inquiry = session.get(MedicalInquiry, inquiry_id)
    if inquiry is None:
        raise NotFound("medical inquiry not found")
    if not response.strip():
        raise InvalidInput("a response is required")
    inquiry.response = response
    inquiry.reviewer_id = reviewer_id
    inquiry.status = InquiryStatus.answered
    inquiry.answered_at = now
    session.flush()
    audit.record(
        session, action="medical_inquiry.answered", subject_type="medical_inquiry", subject_id=inquiry.id,
        actor_type="staff", actor_id=reviewer_id, at=now,
    )
    return inquiry


# ---------------------------------------------------------------- consent


def _consent_address(conversation: Conversation) -> str:
    # Web chat has no phone number; its consent belongs to the conversation.
    return conversation.address or f"conversation:{conversation.id}"


def record_consent(
    session: Session,
    *,
    channel: str,
    address: str,
    hcp_id: str | None,
    purpose: str,
    action: str,
    source: str,
    message_id: int | None,
    now: datetime,
) -> None:
    """Append one consent change (history is never rewritten; the latest row wins)."""
    try:
        purpose_value = ConsentPurpose(purpose)
        action_value = ConsentAction(action)
    except ValueError as exc:
        raise InvalidInput(f"invalid consent purpose/action: {purpose!r}/{action!r}") from exc
    row = Consent(
        channel=channel, address=address, hcp_id=hcp_id, purpose=purpose_value, action=action_value,
        source=source, message_id=message_id, at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, action=f"consent.{action_value}", subject_type="consent", subject_id=str(row.id),
        data={"channel": channel, "purpose": purpose_value, "source": source, "hcp_id": hcp_id,
              "message_id": message_id},
        at=now,
    )


def is_opted_out(session: Session, *, channel: str, address: str, purpose: str = "service") -> bool:
    """True when the latest consent change for this address and purpose is an opt-out."""
    latest = session.execute(
        select(Consent.action)
        .where(Consent.channel == channel, Consent.address == address, Consent.purpose == purpose)
        .order_by(Consent.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return latest == ConsentAction.opt_out


def is_conversation_opted_out(session: Session, conversation: Conversation, purpose: str = "service") -> bool:
    return is_opted_out(
        session, channel=conversation.channel, address=_consent_address(conversation), purpose=purpose
    )


def _change_consent(
    session: Session, conversation: Conversation, message: Message, action: ConsentAction, now: datetime
) -> list[str]:
    purposes = OPT_OUT_PURPOSES if action == ConsentAction.opt_out else OPT_IN_PURPOSES
    address = _consent_address(conversation)
    for purpose in purposes:
        record_consent(
            session, channel=conversation.channel, address=address, hcp_id=conversation.hcp_id,
            purpose=purpose, action=action, source="keyword", message_id=message.id, now=now,
        )
    return [str(p) for p in purposes]


# ---------------------------------------------------------------- the entry point


def apply(
    session: Session, *, conversation: Conversation, message: Message, result: ScreenResult, now: datetime,
    review_rate: float = recall.DEFAULT_RATE,
) -> SafetyOutcome:
    """Persist what the screen found for ``message`` and say what to tell the HCP now.

    ``review_rate``: the share of unflagged messages drawn for the blinded AE review queue
    (``api.safety.recall``); every flagged message goes there.
    """
    outcome = SafetyOutcome(replies=[], stop_processing=False, handoff_requested=result.handoff)
    # Evidence that this message was screened, whatever it contained (no free text in audit).
    audit.record(
        session, action="safety.screened", subject_type="message", subject_id=str(message.id),
        data={"conversation_id": conversation.id, "state": conversation.state, "route": result.route,
              "adverse_event": result.adverse_event, "categories": list(result.ae_categories),
              "off_label": result.off_label, "opt_out": result.opt_out, "opt_in": result.opt_in,
              "help": result.help, "score": result.ae_score, "products": list(result.products),
              "handoff": result.handoff, "screened_as": result.screened_as},
        at=now,
    )

    if result.adverse_event:
        case, created = create_or_link_case(
            session, conversation=conversation, message=message, result=result, now=now
        )
        outcome.adverse_event_id = case.id
        outcome.replies.append(ReplyDraft(text=_ack_text(case, new=created)))
        missing = missing_criteria(case)
        if missing and not case.missing_asked:
            case.missing_asked = True
            case.updated_at = now
            session.flush()
            outcome.replies.append(ReplyDraft(text=ask_missing_text(missing)))
            audit.record(
                session, action="adverse_event.missing_asked", subject_type="adverse_event",
                subject_id=case.id, data={"missing": missing}, at=now,
            )
    elif not (result.opt_out or result.opt_in or result.help):
        case_updated = _follow_up_answer(
            session, conversation=conversation, message=message, result=result, now=now
        )
        if case_updated is not None:
            outcome.adverse_event_id = case_updated.id
    if not (result.opt_out or result.opt_in or result.help):
        # Live recall: flagged messages and a random share of the rest go to the blinded review.
        recall.sample(session, conversation=conversation, message=message, flagged=result.adverse_event,
                      rate=review_rate, now=now)

    if not (result.opt_out or result.opt_in or result.help) and is_conversation_opted_out(session, conversation):
        # After STOP: no medical inquiry (Medical Information would contact someone who unsubscribed),
        # no bot turn; an adverse event above is already recorded.
        audit.record(session, action="message.opted_out_ignored", subject_type="message", subject_id=str(message.id),
                     data={"conversation_id": conversation.id, "off_label": result.off_label,
                           "adverse_event": result.adverse_event}, at=now)
        outcome.stop_processing = True
        outcome.replies.append(ReplyDraft(text=STILL_OPTED_OUT_TEXT))
        return outcome

    if result.off_label:
        inquiry = create_medical_inquiry(
            session, conversation=conversation, message=message, result=result, now=now
        )
        outcome.medical_inquiry_id = inquiry.id
        # Off-label stays inside Medical: the bot does not answer it from the library.
        outcome.stop_processing = True
        outcome.replies.append(ReplyDraft(text=(
            "Thank you for your question. It goes beyond what I can answer here, so I have passed it "
            f"to our Medical Information team (reference {inquiry.reference}), who will reply to you "
            "directly."
        )))

    if result.opt_out:
        outcome.consent_changed = _change_consent(session, conversation, message, ConsentAction.opt_out, now)
        outcome.replies.append(ReplyDraft(text=OPT_OUT_TEXT))
        outcome.stop_processing = True
    elif result.opt_in:
        outcome.consent_changed = _change_consent(session, conversation, message, ConsentAction.opt_in, now)
        outcome.replies.append(ReplyDraft(text=OPT_IN_TEXT))
        outcome.stop_processing = True
    elif result.help:
        outcome.replies.append(ReplyDraft(text=HELP_TEXT))
        outcome.stop_processing = True
    return outcome
