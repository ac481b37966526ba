"""benchmarks/conversations.py: its input checks and what it may print about a blind set."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import conversations as bench


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_well_formed_set_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"id": "a", "channel": "webchat", "turns": ["hello there"], '
                            '"expect": {"safety_case": false}}')
    [script] = bench.read_set(path)
    assert (script.id, script.channel, script.turns, script.expect) == ("a", "webchat", ["hello there"],
                                                                       {"safety_case": False})


@pytest.mark.parametrize("line, says", [
    ('{"id": "a", "channel": "sms", "turns": ["hi"]}', "channel must be webchat or whatsapp"),
    ('{"id": "a", "channel": "webchat", "turns": []}', "at least one turn"),
    ('{"id": "a", "channel": "webchat", "turns": ["hi"], "expect": {"mood": "good"}}', "unknown expect keys"),
    ('{"id": "a", "turns": ["hi"]}', "not a conversation"),
    ("not json", "not a conversation"),
])
def test_a_malformed_line_is_refused_naming_its_line(tmp_path: Path, line: str, says: str) -> None:
    path = _write(tmp_path, '{"id": "ok", "channel": "webchat", "turns": ["hi"]}', line)
    with pytest.raises(SystemExit, match=rf"set.jsonl:2: .*{says}"):
        bench.read_set(path)


def test_failures_of_a_blind_set_are_never_listed() -> None:
    blind = bench.REPO / "benchmarks" / "blind" / "conversations.jsonl"
    with pytest.raises(SystemExit):
        bench.main(["--set", str(blind), "--show-failures"])


def test_a_blind_report_holds_counts_and_no_text_or_id(tmp_path: Path) -> None:
    blind = bench.BLIND_DIR / "made-up.jsonl"
    script = bench.Script("secret-id", "webchat", ["a very particular sentence"], {"safety_case": False})
    outcome = bench.Outcome(script, conversation_id="c1", checks={"safety_case": False},
                            got={"cases": ["side_effect"], "case_paths": ["model, patient no"]},
                            transcript=[("HCP", "a very particular sentence")])
    text = bench.report(blind, [outcome], show_failures=False)
    assert "passed 0/1" in text and "| safety_case | false | 0 | 1 |" in text
    assert "secret-id" not in text and "particular sentence" not in text
    own = bench.report(tmp_path / "own.jsonl", [outcome], show_failures=True)
    assert "secret-id" in own and "particular sentence" in own
