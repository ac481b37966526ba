from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from api.cli import main
from api.clock import utcnow
from knowledge.engine import KnowledgeBase
from knowledge.gaps import gap_report
from knowledge.service import Recipient, answer_question, load_library
from tests.knowledge.conftest import DEMO_LIBRARY, REPO, TODAY, make_item, small_items

WriteLibrary = Callable[..., Path]
OUTPUT_KEYS = {"id", "decision", "content_id", "score", "candidates"}


def _queries(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    rows = [
        {"id": "q1", "text": "How is Respizan injected?"},
        {"id": "q2", "text": "what's the weather like in Berlin", "market": "DE"},
        {"id": "q3", "text": "What is the recommended dose of Cardiovex?", "market": "JP", "audience": "hcp"},
        {"id": "q4", "text": "cardiovex storage", "audience": "patient"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _assert_schema(rows: list[dict[str, object]]) -> None:
    for row in rows:
        assert set(row) == OUTPUT_KEYS
        assert isinstance(row["id"], str) and row["decision"] in {"answer", "escalate"}
        assert isinstance(row["score"], float)
        cands = row["candidates"]
        assert isinstance(cands, list) and len(cands) <= 5 and all(isinstance(c, str) for c in cands)
        if row["decision"] == "answer":
            assert isinstance(row["content_id"], str) and row["content_id"] == cands[0]
        else:
            assert row["content_id"] is None


def test_validate_exits_0_on_the_demo_library(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["knowledge", "validate", "--library", str(DEMO_LIBRARY)]) == 0
    assert "valid:" in capsys.readouterr().out


def test_validate_exits_1_and_prints_each_error(write_library: WriteLibrary,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = write_library([make_item(), make_item(kind="blog")])
    assert main(["knowledge", "validate", "--library", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: unknown kind 'blog'" in err and "invalid: 1 error(s)" in err


def test_answer_writes_one_schema_valid_line_per_query_without_a_database(
        write_library: WriteLibrary, tmp_path: Path, fake_kb: KnowledgeBase,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("knowledge.engine.get_knowledge_base", lambda _dir: fake_kb)
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    out = tmp_path / "out.jsonl"
    lib = write_library(small_items())
    code = main(["knowledge", "answer", "--library", str(lib), "--queries", str(_queries(tmp_path)),
                 "--out", str(out), "--today", TODAY.isoformat()])
    assert code == 0
    rows = _read(out)
    _assert_schema(rows)
    by_id = {r["id"]: r for r in rows}
    assert [r["id"] for r in rows] == ["q1", "q2", "q3", "q4"]
    assert by_id["q1"]["decision"] == "answer" and by_id["q1"]["content_id"] == "T-003"
    assert by_id["q2"]["decision"] == "escalate"
    assert by_id["q3"]["candidates"] == [] and by_id["q3"]["decision"] == "escalate"  # JP: nothing approved
    assert by_id["q4"]["decision"] == "escalate"  # items are hcp-only


def test_load_then_gaps_on_a_fresh_database(write_library: WriteLibrary, tmp_path: Path, fake_kb: KnowledgeBase,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("knowledge.service.get_knowledge_base", lambda _dir: fake_kb)
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("CONCIERGE_VAR_DIR", str(tmp_path / "var"))
    assert main(["knowledge", "load", "--library", str(write_library(small_items()))]) == 0
    assert "4 new" in capsys.readouterr().out
    assert main(["knowledge", "gaps"]) == 0
    assert "no escalated" in capsys.readouterr().out


def test_gap_report_clusters_escalated_questions_with_counts_and_examples(
        session: Session, write_library: WriteLibrary, fake_kb: KnowledgeBase) -> None:
    load_library(session, write_library(small_items()))
    hcp = Recipient("US", "hcp", True)
    # The DB is shared with the whole suite: every content word carries this test's tag, so no other
    # test's escalated question can join these clusters, and only clusters holding the tag are counted.
    tag = uuid.uuid4().hex[:6]
    started = utcnow() - timedelta(microseconds=1)
    questions = (f"respizan{tag} in polyps{tag}?", f"polyps{tag} and respizan{tag}", f"respizan{tag} polyps{tag} data",
                 f"glucorel{tag} cardiomyopathy{tag} outcomes", f"cardiomyopathy{tag} glucorel{tag}")
    for q in questions:
        assert answer_question(session, fake_kb, q, hcp, today=TODAY).decision == "escalate"
    ours = [c for c in gap_report(session, since=started) if any(tag in e for e in c.examples)]
    assert all(tag in e for c in ours for e in c.examples)
    assert sorted(c.count for c in ours) == [2, 3]
    top = ours[0]
    assert top.count == 3 and f"polyps{tag}" in top.label and top.escalated == 3
    assert set(top.examples) == set(questions[:3])


def test_console_script_validates_in_a_subprocess() -> None:
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "concierge"), "knowledge", "validate", "--library",
                           str(DEMO_LIBRARY)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("valid: ")


@pytest.mark.slow
def test_answer_with_the_real_model_is_deterministic_and_caches_its_index(tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "text": "cardiovex max dose"},
        {"id": "b", "text": "how do I store respizan pens", "market": "GB"},
        {"id": "c", "text": "how much has the dow changed today"},
        {"id": "d", "text": "cardiovex in children"},
    ]), encoding="utf-8")
    outs = []
    for n in range(2):
        out = tmp_path / f"out{n}.jsonl"
        assert main(["knowledge", "answer", "--library", str(DEMO_LIBRARY), "--queries", str(queries),
                     "--out", str(out), "--index-dir", str(tmp_path / "idx"), "--today", TODAY.isoformat()]) == 0
        outs.append(out.read_text(encoding="utf-8"))
    assert outs[0] == outs[1]
    rows = {r["id"]: r for r in _read(tmp_path / "out0.jsonl")}
    _assert_schema(list(rows.values()))
    assert rows["a"]["candidates"][0] == "CVX-002"  # type: ignore[index]
    assert rows["c"]["decision"] == "escalate"
    assert rows["d"]["decision"] == "escalate" and "CVX-026" not in rows["d"]["candidates"]  # type: ignore[operator]
    assert len(list((tmp_path / "idx").glob("*/vectors.faiss"))) == 1
