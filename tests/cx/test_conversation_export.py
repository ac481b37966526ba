"""The CX conversation CSV as a service: the free-text policy, formula-safe cells, the row budget."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from api.conversations.models import Conversation, Message
from api.errors import Forbidden, InvalidInput
from feedback import conversation_export as export
from feedback.models import FeedbackComment

T0 = datetime(2031, 3, 4, 10, 0, tzinfo=UTC)  # a window no other test writes into


def _conversation(session: Session, *, at: datetime = T0, channel: str = "whatsapp", wrote: bool = True) -> str:
    conv = Conversation(channel=channel, address=None, state="bot", market="GB", audience="hcp", failed_turns=0,
                        created_at=at, last_inbound_at=at if wrote else None)
    session.add(conv)
    session.flush()
    if wrote:
        session.add(Message(conversation_id=conv.id, direction="in", sender_type="hcp", channel=channel,
                            body="hello", status="processed", created_at=at))
    return conv.id


def test_free_text_only_for_a_role_that_allows_it_and_only_through_redaction() -> None:
    def redact(text: str) -> str:
        return text.upper()

    assert export.free_text_mode({"cx_analyst"}, False, redact) is None
    assert export.free_text_mode({"cx_analyst"}, True, redact) == "redacted"
    with pytest.raises(Forbidden, match="does not allow free text"):
        export.free_text_mode({"admin", "content_admin"}, True, redact)
    with pytest.raises(InvalidInput, match="only after redaction"):
        export.free_text_mode({"cx_analyst"}, True, None)


def test_rows_cover_conversations_where_the_hcp_wrote_in_the_window_and_channel(session: Session) -> None:
    inside = _conversation(session)
    _conversation(session, wrote=False)  # opened, never written in: not a conversation for CX
    _conversation(session, at=T0 + timedelta(days=2))  # after the window
    web = _conversation(session, at=T0 + timedelta(minutes=5), channel="webchat")
    found = export.rows(session, since=T0, until=T0 + timedelta(days=1))
    assert [r.conversation.id for r in found] == [inside, web]
    only_wa = export.rows(session, since=T0, until=T0 + timedelta(days=1), channel="whatsapp")
    assert [r.conversation.id for r in only_wa] == [inside]
    assert only_wa[0].messages_in == 1 and only_wa[0].handoff is None


def test_comments_are_read_only_when_asked_and_every_cell_is_formula_safe(session: Session) -> None:
    cid = _conversation(session)
    session.add(FeedbackComment(conversation_id=cid, subject="x", text="=1+2\nsecond line", category="other",
                                created_at=T0))
    session.flush()
    plain = export.rows(session, since=T0, until=T0 + timedelta(days=1))
    assert plain[0].comments is None and plain[0].themes == {"other"}
    assert "1+2" not in export.to_csv(plain)
    found = export.rows(session, since=T0, until=T0 + timedelta(days=1), with_comments=True)
    [row] = list(csv.DictReader(io.StringIO(export.to_csv(found, redact=lambda t: t))))
    assert row["comments"] == "'=1+2 second line"
    assert row["handoff"] == "none" and row["contained"] == "yes" and row["time_to_human_s"] == ""
    assert row["outcome"] == "contained"


def test_a_window_with_too_many_conversations_is_refused(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    _conversation(session)
    _conversation(session)
    monkeypatch.setattr(export, "MAX_ROWS", 1)
    with pytest.raises(InvalidInput, match="more than 1 conversations in this period"):
        export.rows(session, since=T0, until=T0 + timedelta(days=1))
