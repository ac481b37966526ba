"""A content admin uploads a new library, reads its impact on recent HCP questions, then loads it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import unit_of_work
from api.settings import Settings
from knowledge import engine as kengine
from knowledge.embedding import HashingEmbedder, NumpyVectorIndex
from knowledge.engine import KnowledgeBase
from knowledge.models import Answer, ContentVersion
from knowledge.policy import AnswerPolicy, Calibrator
from knowledge.service import load_library
from tests.browser.a11y import blocking_violations, overflow_px
from tests.browser.staff_pages import DOCS_SCREENS, log_in, make_staff

Page = Any


@pytest.fixture()
def fast_index(settings: Settings, tmp_path: Path) -> Iterator[KnowledgeBase]:
    """The app's knowledge base for this test: the hashing embedder (no model to load), numpy index."""
    cal = Calibrator((20.0, 0.0, 0.0, 0.0), -14.0, 0.5)
    kb = KnowledgeBase(tmp_path / "kb", embedder=HashingEmbedder(), index_factory=NumpyVectorIndex,
                       policy=AnswerPolicy(0.05, {"hybrid": cal, "bm25": cal, "dense": cal}))
    key = settings.resolved_index_dir.resolve()
    before = kengine._INSTANCES.get(key)
    kengine._INSTANCES[key] = kb
    yield kb
    if before is None:
        kengine._INSTANCES.pop(key, None)
    else:
        kengine._INSTANCES[key] = before


def _item(word: str, **over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"PW-RP-{word.upper()}", "version": 1, "title": f"Velunor {word} infusion rate", "product": "velunor",
        "kind": "faq", "audience": ["hcp"], "markets": ["US", "GB"], "status": "approved",
        "approval_code": f"HAL-RP-{word.upper()}", "approved_at": "2026-01-01", "expires_at": "2029-01-01",
        "questions": [f"What infusion rate is used for velunor {word}?"],
        "body": f"Velunor {word} is infused over 30 minutes; see section 4.2 of the label."}
    out.update(over)
    return out


def test_a_content_admin_sees_the_impact_of_a_new_library_before_loading_it(
        staff_page: Page, live_server: str, engine: Engine, tmp_path: Path, fast_index: KnowledgeBase,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from api.consoles import content

    monkeypatch.setattr(content, "REPLAY_SHOWN_CHANGES", 10**6)  # other tests' changes must not hide ours
    base, admin = live_server, staff_page
    tag = uuid.uuid4().hex[:6]
    kept = _item(f"k{tag}")
    pulled = _item(f"p{tag}", title=f"Velunor p{tag} stability after dilution",
                   questions=[f"How long is diluted velunor p{tag} stable?"],
                   body=f"Diluted velunor p{tag} is stable for 24 hours at 2-8 °C.")
    current = tmp_path / "current.jsonl"
    current.write_text(json.dumps(kept) + "\n" + json.dumps(pulled) + "\n")
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with unit_of_work(factory) as s:
        load_library(s, current, actor="browser-test")
        # the kept item's own question: its answer stays the same however many items other tests loaded
        for it, query in ((kept, kept["questions"][0]), (pulled, f"{pulled['questions'][0]} (asked by Dr Hollis)")):
            s.add(Answer(query=query, market="US", audience="hcp", verified=True, decision="answer",
                         content_id=it["id"], content_version=1, score=0.9, candidates=[], gated_count=0,
                         created_at=datetime.now(UTC)))
    new = tmp_path / "velunor-2027.jsonl"
    new.write_text(json.dumps(kept) + "\n" + json.dumps({**pulled, "version": 2, "status": "withdrawn"}) + "\n")

    log_in(admin, base, make_staff(engine, "content_admin", "Rae Replay"), "/console/content")
    admin.get_by_label("Library file").set_input_files(str(new))
    admin.get_by_label("Replay questions of the").select_option("7")
    admin.get_by_role("button", name="Validate").click()

    report = admin.get_by_test_id("replay-report")
    expect(report).to_contain_text("Impact on recent questions")
    expect(report).to_contain_text("last 7 days")
    changes = report.get_by_role("table")
    row = changes.get_by_role("row").filter(has_text=f"p{tag}")
    expect(row).to_contain_text(pulled["id"])
    expect(row).to_contain_text("escalated")
    expect(row).to_contain_text("Dr [name]")          # HCP free text is shown masked
    expect(changes).not_to_contain_text("Hollis")
    expect(changes.get_by_role("row").filter(has_text=f"k{tag}")).to_have_count(0)
    expect(changes.get_by_role("columnheader", name="After this load")).to_be_visible()
    assert blocking_violations(admin) == []
    admin.screenshot(path=str(DOCS_SCREENS / "console-content-replay.png"), full_page=True)
    admin.set_viewport_size({"width": 390, "height": 844})   # on a phone: one card per row, no sideways scroll
    expect(row.locator("td").first).to_have_attribute("data-label", "Question (personal data masked)")
    assert overflow_px(admin) == 0 and blocking_violations(admin) == []
    admin.set_viewport_size({"width": 1280, "height": 900})
    with Session(engine) as s:   # nothing loaded while the admin reads the report
        assert s.scalars(select(ContentVersion.version).where(ContentVersion.content_id == pulled["id"],
                                                              ContentVersion.is_current.is_(True))).one() == 1

    admin.get_by_role("button", name="Load this library").click()
    expect(admin.locator("body")).to_contain_text("Loaded velunor-2027.jsonl: 1 new version(s).")
    with Session(engine) as s:
        current_row = s.scalars(select(ContentVersion).where(ContentVersion.content_id == pulled["id"],
                                                             ContentVersion.is_current.is_(True))).one()
        assert (current_row.version, current_row.status) == (2, "withdrawn")
