"""Fixtures for the knowledge tests: item factories, tiny libraries, a fast fake knowledge base."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from knowledge.embedding import HashingEmbedder, NumpyVectorIndex
from knowledge.engine import KnowledgeBase
from knowledge.policy import AnswerPolicy, Calibrator

REPO = Path(__file__).resolve().parents[2]
DEMO_LIBRARY = REPO / "knowledge" / "content"
COVID_LIBRARY = REPO.parent / "shared" / "eval" / "covid_faq" / "library.jsonl"
TODAY = date(2026, 11, 23)


def make_item(**over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "T-001", "version": 1, "title": "Cardiovex storage", "product": "cardiovex", "kind": "faq",
        "audience": ["hcp"], "markets": ["US", "GB"], "status": "approved", "approval_code": "APP-T-001",
        "approved_at": "2026-01-01", "expires_at": "2027-12-31",
        "questions": ["How should Cardiovex be stored?"],
        "body": "Store Cardiovex tablets below 30°C in the original blister pack.",
    }
    item.update(over)
    return item


def small_items() -> list[dict[str, Any]]:
    return [
        make_item(),
        make_item(id="T-002", title="Cardiovex dose", approval_code="APP-T-002",
                  questions=["What is the recommended dose of Cardiovex?"],
                  body="The recommended starting dose of Cardiovex is 10 mg once daily."),
        make_item(id="T-003", title="Respizan injection", product="respizan", approval_code="APP-T-003",
                  questions=["How is Respizan injected?"],
                  body="Respizan is injected under the skin of the thigh or abdomen every 4 weeks."),
        make_item(id="T-004", title="Glucorel pen travel", product="glucorel", approval_code="APP-T-004",
                  questions=[],
                  body="When flying, carry Glucorel pens in hand luggage inside a cool bag."),
    ]


@pytest.fixture()
def write_library(tmp_path: Path) -> Callable[[list[dict[str, Any]]], Path]:
    def write(items: list[dict[str, Any]], name: str = "lib.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
        return path

    return write


@pytest.fixture()
def test_policy() -> AnswerPolicy:
    """Answer when the hybrid score clears 0.7 (the fake embedder is not what policy.json was fit on)."""
    cal = Calibrator((20.0, 0.0, 0.0, 0.0), -14.0, 0.5)
    return AnswerPolicy(0.05, {"hybrid": cal, "bm25": cal, "dense": cal})


@pytest.fixture()
def fake_kb(tmp_path: Path, test_policy: AnswerPolicy) -> KnowledgeBase:
    return KnowledgeBase(tmp_path / "index", embedder=HashingEmbedder(), index_factory=NumpyVectorIndex,
                         policy=test_policy)
