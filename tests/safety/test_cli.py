"""``concierge triage``: the output contract, bad input, exit codes, nothing half-written."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from api.safety import cli
from tests.conftest import REPO
from tests.safety.conftest import MODEL_DIR, PRODUCTS_FIXTURE

ROUTES = {"bot", "medical", "safety", "rep"}


def triage(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="concierge")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["triage", *argv, "--model-dir", str(MODEL_DIR), "--products", str(PRODUCTS_FIXTURE)])
    code: int = args.func(args)
    return code


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_output_line_follows_the_schema_in_input_order(tmp_path: Path) -> None:
    items = [
        {"id": "a", "text": "my patient developed a rash after the second dose"},
        {"id": "b", "text": "can I use glucorel for weight loss in non-diabetic patients?"},
        {"id": "c", "text": "could you send me some cardiovex samples?"},
        {"id": "d", "text": "what are the side effects of cardiovex?"},
        {"id": "e", "text": ""},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", [json.dumps(i) for i in items])
    out = tmp_path / "out.jsonl"
    assert triage("--input", str(src), "--out", str(out)) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e"]
    for row in rows:
        assert set(row) == {"id", "adverse_event", "off_label", "route"}
        assert isinstance(row["id"], str)
        assert isinstance(row["adverse_event"], bool) and isinstance(row["off_label"], bool)
        assert row["route"] in ROUTES
    assert [r["route"] for r in rows] == ["safety", "medical", "rep", "bot", "bot"]
    assert rows[0]["adverse_event"] and rows[1]["off_label"]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"id": "x"}', "line 2: missing field(s) 'text'"),
        ('{"text": "hello"}', "line 2: missing field(s) 'id'"),
        ('{"id": "x", "text": 42}', "line 2: 'text' must be a string"),
        ('{"id": 7, "text": "hi"}', "line 2: 'id' must be a string"),
        ('["id", "text"]', "line 2: expected a JSON object"),
    ],
)
def test_bad_input_line_is_named_exits_1_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad_line: str, message: str
) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ['{"id": "ok", "text": "hello"}', bad_line])
    out = tmp_path / "out.jsonl"
    assert triage("--input", str(src), "--out", str(out)) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temp file left behind


def test_bad_input_keeps_an_existing_output_file_untouched(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ['{"id": "ok", "text": "hello"}', "oops"])
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    assert triage("--input", str(src), "--out", str(out)) == 1
    assert out.read_text() == "previous\n"


def test_every_bad_line_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ["oops", '{"id": "ok", "text": "hi"}', '{"id": "x"}'])
    assert triage("--input", str(src), "--out", str(tmp_path / "o.jsonl")) == 1
    err = capsys.readouterr().err
    assert "line 1:" in err and "line 3:" in err


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ['{"id": "1", "text": "hello"}', "", '{"id": "2", "text": "hi"}'])
    out = tmp_path / "out.jsonl"
    assert triage("--input", str(src), "--out", str(out)) == 0
    assert len(out.read_text().splitlines()) == 2


def test_missing_input_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert triage("--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl")) == 1
    assert "not found" in capsys.readouterr().err


def test_triage_is_deterministic(tmp_path: Path) -> None:
    lines = [json.dumps({"id": str(i), "text": t}) for i, t in enumerate([
        "pt on cardiovex c/o muscle pain", "hello", "is glucorel ok for children?", "STOP"])]
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    assert triage("--input", str(src), "--out", str(tmp_path / "1.jsonl")) == 0
    assert triage("--input", str(src), "--out", str(tmp_path / "2.jsonl")) == 0
    assert (tmp_path / "1.jsonl").read_bytes() == (tmp_path / "2.jsonl").read_bytes()


def test_console_script_runs_triage_end_to_end(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [json.dumps({"id": "1", "text": "she took 3x the dose by mistake"})])
    out = tmp_path / "out.jsonl"
    code = (
        "import sys; from api.safety.cli import register; import argparse;"
        "p = argparse.ArgumentParser(); register(p.add_subparsers());"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "triage", "--input", str(src), "--out", str(out),
         "--model-dir", str(MODEL_DIR), "--products", str(PRODUCTS_FIXTURE)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == {"id": "1", "adverse_event": True, "off_label": False, "route": "safety"}


def test_safety_train_reports_the_cached_model(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="concierge")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["safety-train", "--model-dir", str(MODEL_DIR)])
    assert args.func(args) == 0
    assert "threshold" in capsys.readouterr().out
