"""The CX conversation export: one CSV row per conversation, no free text unless the role allows.

Rows: conversations started in a UTC window ``[since, until)`` in which the HCP wrote at least
once (the dashboard's containment population, ``feedback.kpis``), optionally one channel.
Columns (``COLUMNS``):

- ``products``: products of questions answered or escalated in it (``conversation_product``);
- ``outcome``: the first handoff's outcome when it was closed with one, else ``handoff <status>``;
  without a handoff ``medical information`` (a question went to Medical) or ``contained``;
- ``handoff`` / ``handoff_status`` / ``handoff_outcome``: the first handoff's target, status and
  outcome (``none`` when nobody was asked for); ``handoffs``: how many;
- ``time_to_human_s``: first handoff created → claimed, seconds (empty when never claimed);
- ``medical_inquiry``: whether a question went to Medical (that it exists — never its text);
- ``contained``: neither a handoff nor a medical inquiry (the KPI's definition);
- ``csat`` / ``nps``: the latest answered score; ``answers_helpful`` / ``answers_not_helpful``;
- ``themes``: the categories of the conversation's feedback comments and the reasons given for
  unhelpful answers (``feedback.service.comment_category``; labels, not text).

No message bodies, no names, numbers or HCP ids. Free text (the HCP's feedback comments) is a
column only for a role in ``FREE_TEXT_ROLES``, and only as that role may read it: CX analysts
read comments after ``feedback.redact.redact`` (as on the dashboard). Every cell is written so a
spreadsheet cannot run it as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation, Direction, Message
from api.errors import Forbidden, InvalidInput
from api.handoffs.models import Handoff
from api.safety.models import MedicalInquiry
from api.staff.models import StaffRole
from feedback.cx_queries import conversation_product
from feedback.models import AnswerRating, FeedbackComment, SurveyKind, SurveyResponse, SurveyStatus

COLUMNS = ("conversation_id", "started_at", "channel", "market", "state", "products", "messages_in",
           "messages_out", "outcome", "handoff", "handoff_status", "handoff_outcome", "handoffs", "time_to_human_s",
           "medical_inquiry", "contained", "csat", "nps", "answers_helpful", "answers_not_helpful", "themes")
FREE_TEXT_COLUMN = "comments"
# Which roles may have free text in the export, and through which filter ("redacted": feedback.redact).
FREE_TEXT_ROLES: dict[str, str] = {StaffRole.cx_analyst: "redacted"}
MAX_ROWS = 20000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Row:
    conversation: Conversation
    products: set[str]
    messages_in: int = 0
    messages_out: int = 0
    handoff: Handoff | None = None
    handoffs: int = 0
    medical_inquiry: bool = False
    csat: int | None = None
    nps: int | None = None
    helpful: int = 0
    not_helpful: int = 0
    themes: set[str] | None = None
    comments: list[str] | None = None


def free_text_mode(roles: Iterable[str], wanted: bool, redact: Callable[[str], str] | None) -> str | None:
    """How this reader gets free text: None (not at all) or the filter's name; refuses what the role may not."""
    if not wanted:
        return None
    modes = {FREE_TEXT_ROLES[r] for r in roles if r in FREE_TEXT_ROLES}
    if not modes:
        raise Forbidden("your role does not allow free text in the conversation export")
    if "redacted" in modes and redact is None:
        raise InvalidInput("free text is exported only after redaction, and the redaction module is not installed")
    return "redacted"


def _safe(value: Any) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return "'" + text if text.startswith(FORMULA_START) else text


def rows(session: Session, *, since: datetime, until: datetime, channel: str | None = None,
         with_comments: bool = False) -> list[Row]:
    """One Row per conversation in the window, oldest first; refuses a window of more than MAX_ROWS."""
    window = [Conversation.created_at >= since, Conversation.created_at < until,
              Conversation.last_inbound_at.is_not(None)]
    if channel:
        window.append(Conversation.channel == channel)
    convs = list(session.execute(select(Conversation).where(*window)
                                 .order_by(Conversation.created_at, Conversation.id).limit(MAX_ROWS + 1)).scalars())
    if len(convs) > MAX_ROWS:
        raise InvalidInput(f"more than {MAX_ROWS} conversations in this period: choose a shorter one")
    out = {c.id: Row(c, set()) for c in convs}
    if not out:
        return []
    in_window = select(Conversation.id).where(*window).scalar_subquery()

    for cid, product in session.execute(select(conversation_product.c.conversation_id, conversation_product.c.product)
                                        .where(conversation_product.c.conversation_id.in_(in_window))):
        out[cid].products.add(product)
    for cid, direction, n in session.execute(
            select(Message.conversation_id, Message.direction, func.count())
            .where(Message.conversation_id.in_(in_window)).group_by(Message.conversation_id, Message.direction)):
        if direction == Direction.inbound:
            out[cid].messages_in = int(n)
        else:
            out[cid].messages_out += int(n)
    for h in session.execute(select(Handoff).where(Handoff.conversation_id.in_(in_window))
                             .order_by(Handoff.created_at, Handoff.id)).scalars():
        row = out[h.conversation_id]
        row.handoffs += 1
        row.handoff = row.handoff or h
    for cid in session.execute(select(MedicalInquiry.conversation_id).where(
            MedicalInquiry.conversation_id.in_(in_window)).distinct()).scalars():
        out[cid].medical_inquiry = True
    for s in session.execute(select(SurveyResponse).where(
            SurveyResponse.conversation_id.in_(in_window), SurveyResponse.status == SurveyStatus.answered,
            SurveyResponse.score.is_not(None)).order_by(SurveyResponse.answered_at, SurveyResponse.id)).scalars():
        if s.kind == SurveyKind.csat:
            out[s.conversation_id].csat = s.score
        elif s.kind == SurveyKind.nps:
            out[s.conversation_id].nps = s.score
    for r in session.execute(select(AnswerRating).where(AnswerRating.conversation_id.in_(in_window))).scalars():
        row = out[r.conversation_id]
        if r.helpful:
            row.helpful += 1
        else:
            row.not_helpful += 1
            if r.reason:
                row.themes = (row.themes or set()) | {f"answer {r.reason.replace('_', ' ')}"}
    for c in session.execute(select(FeedbackComment).where(FeedbackComment.conversation_id.in_(in_window))
                             .order_by(FeedbackComment.created_at, FeedbackComment.id)).scalars():
        row = out[c.conversation_id]
        row.themes = (row.themes or set()) | {c.category}
        if with_comments:
            row.comments = [*(row.comments or []), c.text]
    return list(out.values())


# Drill-downs from a dashboard tile to the conversations behind it: (title, test on a Row).
DRILLS: dict[str, tuple[str, Callable[[Row], bool]]] = {
    "all": ("All conversations", lambda r: True),
    "contained": ("Contained (no person, no Medical Information)",
                  lambda r: not r.handoffs and not r.medical_inquiry),
    "handoff": ("Handed to a person", lambda r: r.handoffs > 0),
    "unclaimed": ("Handoff not (yet) taken by a person",
                  lambda r: r.handoff is not None and r.handoff.claimed_at is None),
    "medical": ("A question went to Medical Information", lambda r: r.medical_inquiry),
    "dissatisfied": ("CSAT 1–2", lambda r: r.csat is not None and r.csat <= 2),
    "detractor": ("NPS detractors (0–6)", lambda r: r.nps is not None and r.nps <= 6),
    "not_helpful": ("An answer rated not helpful", lambda r: r.not_helpful > 0),
}


def drill(found: list[Row], name: str, *, product: str | None = None, theme: str | None = None,
          conversation_ids: set[str] | None = None) -> list[Row]:
    """The rows behind one tile (``DRILLS``), optionally one product, one feedback category, or the
    conversations of one feedback theme (``conversation_ids``)."""
    if name not in DRILLS:
        raise InvalidInput(f"drill must be one of {', '.join(DRILLS)}")
    test = DRILLS[name][1]
    return [r for r in found if test(r) and (not product or product in r.products)
            and (not theme or theme in (r.themes or ()))
            and (conversation_ids is None or r.conversation.id in conversation_ids)]


def outcome(row: Row) -> str:
    return _outcome(row)


def _outcome(row: Row) -> str:
    h = row.handoff
    if h is not None:
        return h.outcome.replace("_", " ") if h.outcome else f"handoff {h.status.replace('_', ' ')}"
    return "medical information" if row.medical_inquiry else "contained"


def _cells(row: Row) -> list[Any]:
    c, h = row.conversation, row.handoff
    to_human = (h.claimed_at - h.created_at).total_seconds() if h is not None and h.claimed_at else None
    return [c.id, c.created_at.isoformat(), c.channel, c.market, c.state, ";".join(sorted(row.products)),
            row.messages_in, row.messages_out, _outcome(row), h.target if h else "none", h.status if h else "",
            (h.outcome or "") if h else "", row.handoffs, "" if to_human is None else round(to_human),
            "yes" if row.medical_inquiry else "no", "no" if (row.handoffs or row.medical_inquiry) else "yes",
            row.csat, row.nps, row.helpful, row.not_helpful, ";".join(sorted(row.themes or ()))]


def to_csv(found: list[Row], *, redact: Callable[[str], str] | None = None) -> str:
    """The CSV text; with ``redact``, a ``comments`` column of the redacted comments."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([*COLUMNS, *([FREE_TEXT_COLUMN] if redact else [])])
    for row in found:
        cells = _cells(row)
        if redact:
            cells.append(" | ".join(redact(t) for t in row.comments or []))
        writer.writerow([_safe(v) for v in cells])
    return buf.getvalue()
