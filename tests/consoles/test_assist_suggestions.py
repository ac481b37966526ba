"""Suggested approved replies (agent assist): the bot's gate decides what may be suggested, only the
HCP's own readable messages are the query, and only the holder of the handoff sees them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations import service as conversations
from api.conversations.models import Conversation, SenderType
from api.handoffs import service as handoffs
from api.handoffs.errors import NotClaimed, NotHolder
from api.handoffs.suggest import recent_hcp_messages, record_shown, suggestions, suggestions_for_handoff
from api.hcps.models import Hcp, VerificationStatus
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.staff import service as staff_service
from api.staff.service import StaffIdentity
from knowledge.embedding import HashingEmbedder, NumpyVectorIndex
from knowledge.engine import KnowledgeBase
from knowledge.policy import AnswerPolicy, Calibrator
from knowledge.service import load_library, withdraw
from tests.consoles.handoff_factory import mark_screened, write_library

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture()
def kb(tmp_path: Path) -> KnowledgeBase:
    cal = Calibrator((20.0, 0.0, 0.0, 0.0), -14.0, 0.5)
    return KnowledgeBase(tmp_path / "index", embedder=HashingEmbedder(), index_factory=NumpyVectorIndex,
                         policy=AnswerPolicy(0.05, {"hybrid": cal, "bm25": cal, "dense": cal}))


def _item(cid: str, title: str, question: str, body: str, **over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": cid, "version": 1, "title": title, "product": "cardiovex", "kind": "faq", "audience": ["hcp"],
        "markets": ["GB", "US"], "status": "approved", "approval_code": f"APP-{cid}", "approved_at": "2026-01-01",
        "expires_at": "2027-12-31", "questions": [question], "body": body,
    }
    item.update(over)
    return item


class Lib:
    """A small library with ids unique to one test (the test database is shared)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6].upper()
        self.storage = f"AS-{tag}-STORE"
        self.storage_us = f"AS-{tag}-STORE-US"
        self.pi = f"AS-{tag}-PI"
        self.dose = f"AS-{tag}-DOSE"
        self.word = f"zorblix{tag.lower()}"  # a made-up word only this test's items and messages use

    def items(self) -> list[dict[str, Any]]:
        w = self.word
        return [
            _item(self.storage, f"{w} fridge storage", f"How do I keep {w} cold in the fridge?",
                  f"Keep {w} pens in a fridge between 2 and 8 degrees, in the carton."),
            _item(self.storage_us, f"{w} fridge storage (US wording)", f"How do I keep {w} cold in the fridge?",
                  f"Keep {w} pens in a refrigerator between 36 and 46 F.", markets=["US"]),
            _item(self.pi, f"{w} prescribing information", f"Where is the {w} prescribing information?",
                  f"The full {w} prescribing information is attached.", kind="pi"),
            _item(self.dose, f"{w} starting dose", f"What is the starting dose of {w}?",
                  f"Start {w} at 5 units once daily."),
        ]


@pytest.fixture()
def lib(session: Session, tmp_path: Path) -> Iterator[Lib]:
    found = Lib()
    load_library(session, write_library(tmp_path, found.items()), actor="tester")
    yield found


def _conversation(session: Session, *, market: str = "GB", verified: bool = False) -> Conversation:
    conv, _token = conversations.create_webchat(session, now=NOW, market=market)
    hcp = Hcp(created_at=NOW, name="Dr Test", country=market,
              verification_status=VerificationStatus.verified if verified else VerificationStatus.pending)
    session.add(hcp)
    session.flush()
    conv.hcp_id = hcp.id
    return conv


def _hcp_says(session: Session, conv: Conversation, *texts: str) -> None:
    for text in texts:
        mark_screened(session, conversations.persist_inbound(session, conv, text=text, now=NOW).message)


def _ids(found: list[Any]) -> list[str]:
    return [s.content_id for s in found]


def test_an_item_for_another_market_is_never_suggested_even_when_it_fits_best(
        session: Session, kb: KnowledgeBase, lib: Lib) -> None:
    conv = _conversation(session, market="GB", verified=True)
    _hcp_says(session, conv, f"How do I keep {lib.word} cold in the fridge? refrigerator 36 46 F")
    found = suggestions(session, kb, conv, None, now=NOW, default_market="GB", floor=0.0)
    assert lib.storage in _ids(found)
    assert lib.storage_us not in _ids(found)
    # the same question from a US HCP may get the US item
    us = _conversation(session, market="US", verified=True)
    _hcp_says(session, us, f"How do I keep {lib.word} cold in the fridge? refrigerator 36 46 F")
    assert lib.storage_us in _ids(suggestions(session, kb, us, None, now=NOW, default_market="GB", floor=0.0))


def test_an_unverified_hcp_is_not_suggested_prescribing_information(
        session: Session, kb: KnowledgeBase, lib: Lib) -> None:
    question = f"where can I find the {lib.word} prescribing information"
    unverified = _conversation(session, verified=False)
    _hcp_says(session, unverified, question)
    assert lib.pi not in _ids(suggestions(session, kb, unverified, None, now=NOW, default_market="GB", floor=0.0))
    verified = _conversation(session, verified=True)
    _hcp_says(session, verified, question)
    assert _ids(suggestions(session, kb, verified, None, now=NOW, default_market="GB", floor=0.0))[0] == lib.pi


def test_withdrawn_and_expired_items_are_never_suggested(session: Session, kb: KnowledgeBase, lib: Lib,
                                                        tmp_path: Path) -> None:
    conv = _conversation(session, verified=True)
    _hcp_says(session, conv, f"what is the starting dose of {lib.word}?")
    assert _ids(suggestions(session, kb, conv, None, now=NOW, default_market="GB", floor=0.0))[0] == lib.dose
    withdraw(session, lib.dose, actor="tester", reason="label change")
    assert lib.dose not in _ids(suggestions(session, kb, conv, None, now=NOW, default_market="GB", floor=0.0))

    expiring = _item(f"{lib.dose}-X", f"{lib.word} starting dose (old)", f"What is the starting dose of {lib.word}?",
                     f"Start {lib.word} at 5 units once daily.", expires_at="2026-11-23")
    load_library(session, write_library(tmp_path, [expiring]), actor="tester")
    the_day_before = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    assert expiring["id"] in _ids(suggestions(session, kb, conv, None, now=the_day_before, default_market="GB",
                                              floor=0.0))
    assert expiring["id"] not in _ids(suggestions(session, kb, conv, None, now=NOW, default_market="GB", floor=0.0))


def test_only_the_hcps_typed_messages_are_the_query_not_staff_or_bot_text_or_buttons(
        session: Session, kb: KnowledgeBase, lib: Lib) -> None:
    conv = _conversation(session, verified=True)
    conversations.add_outbound(session, conv, text=f"what is the starting dose of {lib.word}?", now=NOW,
                               sender_type=SenderType.staff)
    conversations.add_outbound(session, conv, text=f"How do I keep {lib.word} cold in the fridge?", now=NOW,
                               sender_type=SenderType.bot)
    mark_screened(session, conversations.persist_inbound(session, conv, text=f"{lib.word} dose", now=NOW,
                                                         payload="/request_human").message)
    assert recent_hcp_messages(session, conv, None) == []
    assert suggestions(session, kb, conv, None, now=NOW, default_market="GB", floor=0.0) == []


def test_the_latest_question_leads_and_at_most_three_are_suggested(session: Session, kb: KnowledgeBase,
                                                                    lib: Lib) -> None:
    conv = _conversation(session, verified=True)
    _hcp_says(session, conv, f"How do I keep {lib.word} cold in the fridge?",
              f"what is the starting dose of {lib.word}?")
    found = suggestions(session, kb, conv, None, now=NOW, default_market="GB", floor=0.0)
    assert len(found) <= 3
    assert found[0].content_id == lib.dose
    assert lib.storage in _ids(found)
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)


def _staff(session: Session, role: str) -> StaffIdentity:
    user = staff_service.create(session, email=f"{role}-{uuid.uuid4().hex[:8]}@halcyon.example",
                                password="correct horse battery staple", roles=[role], name=None, territory=None,
                                now=NOW)
    return StaffIdentity(id=user.id, email=user.email, name=user.name, roles=frozenset(user.roles), territory=None,
                         session_id="s", csrf_token="c")


def test_a_rep_gets_no_suggestion_built_from_a_message_withheld_from_reps(session: Session, kb: KnowledgeBase,
                                                                           lib: Lib) -> None:
    conv = _conversation(session, verified=True)
    msg = conversations.persist_inbound(session, conv, text=f"what is the starting dose of {lib.word}? for a child",
                                        now=NOW).message
    apply(session, conversation=conv, message=msg,
          result=ScreenResult(off_label=True, products=("cardiovex",), off_label_reasons=("population",)), now=NOW)
    mark_screened(session, msg)
    rep, msl = _staff(session, "rep"), _staff(session, "msl")
    assert recent_hcp_messages(session, conv, rep) == []
    assert suggestions(session, kb, conv, rep, now=NOW, default_market="GB", floor=0.0) == []
    assert lib.dose in _ids(suggestions(session, kb, conv, msl, now=NOW, default_market="GB", floor=0.0))


def test_only_the_holder_of_the_handoff_sees_suggestions_and_each_showing_is_audited(
        session: Session, kb: KnowledgeBase, lib: Lib) -> None:
    conv = _conversation(session, verified=True)
    _hcp_says(session, conv, f"what is the starting dose of {lib.word}?")
    handoff = handoffs.open_handoff(session, conv, target="rep", reason="hcp_request", now=NOW)
    ann, ben = _staff(session, "rep"), _staff(session, "rep")
    with pytest.raises(NotClaimed):
        suggestions_for_handoff(session, kb, handoff.id, ann, now=NOW, default_market="GB")
    handoffs.claim(session, handoff.id, ann, NOW)
    with pytest.raises(NotHolder):
        suggestions_for_handoff(session, kb, handoff.id, ben, now=NOW, default_market="GB")
    found = suggestions_for_handoff(session, kb, handoff.id, ann, now=NOW, default_market="GB")
    assert found and found[0].content_id == lib.dose
    record_shown(session, handoff.id, ann, NOW, found)
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "handoff.suggestions_shown",
                                                     AuditEvent.subject_id == handoff.id)).one()
    assert event.actor_id == ann.id
    assert [i["content_id"] for i in event.data["items"]] == _ids(found)
    assert all(lib.word not in str(v) for v in event.data.values())  # ids and scores, no text


def test_a_very_long_or_html_message_is_still_just_a_query(session: Session, kb: KnowledgeBase, lib: Lib) -> None:
    conv = _conversation(session, verified=True)
    text = "<script>alert(1)</script> " + f"what is the starting dose of {lib.word}? " * 300
    assert len(text) > 10_000
    _hcp_says(session, conv, text)
    found = suggestions(session, kb, conv, None, now=NOW, default_market="GB", floor=0.0)
    assert found and found[0].content_id == lib.dose
