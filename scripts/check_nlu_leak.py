"""Test-set hygiene: no training example may be >= 0.8 similar to a held-out test sentence.

    .venv/bin/python scripts/check_nlu_leak.py [--threshold 0.8] [--since main] [FILES...]

Compares every example in bot/data/nlu/*.yml (or FILES) with every sentence of
bot/tests/nlu_test.yml (difflib SequenceMatcher ratio on lower-cased text, entity
annotations stripped); with --since REV only the examples added since that git revision.
Prints the offending pairs and exits 1 if there are any.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TEST_SET = REPO / "bot" / "tests" / "nlu_test.yml"
ENTITY = re.compile(r"\[([^\]]*)\](\{[^}]*\}|\([^)]*\))")


def examples(path: Path) -> list[tuple[str, str]]:
    return examples_from_text(path.read_text())


def examples_from_text(source: str) -> list[tuple[str, str]]:
    data = yaml.safe_load(source) or {}
    rows = []
    for block in data.get("nlu", []):
        if "intent" not in block:
            continue
        for line in str(block.get("examples", "")).splitlines():
            line = line.strip()
            if line.startswith("- "):
                rows.append((ENTITY.sub(r"\1", line[2:]).strip().lower(), block["intent"]))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--since", metavar="REV", help="only check examples not present at git REV (e.g. main)")
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args()
    files = args.files or sorted((REPO / "bot" / "data" / "nlu").glob("*.yml"))
    tests = [t for t, _ in examples(TEST_SET)]
    old: set[tuple[str, str]] = set()
    if args.since:
        for f in files:
            rel = f.resolve().relative_to(REPO)
            src = subprocess.run(["git", "show", f"{args.since}:{rel}"], cwd=REPO, capture_output=True, text=True)
            if src.returncode == 0:
                old.update(examples_from_text(src.stdout))
    bad = 0
    total = 0
    for f in files:
        for text, intent in examples(f):
            if (text, intent) in old:
                continue
            total += 1
            sm = difflib.SequenceMatcher(None, text, "")
            for t in tests:
                sm.set_seq2(t)
                if sm.real_quick_ratio() < args.threshold or sm.quick_ratio() < args.threshold:
                    continue
                r = sm.ratio()
                if r >= args.threshold:
                    bad += 1
                    print(f"{f.name}: [{intent}] {text!r} ~ test {t!r} ({r:.2f})")
    print(f"{total} training examples checked against {len(tests)} test sentences; {bad} at >= {args.threshold}",
          file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
