"""Staff reply screen benchmark: per-finding precision and recall of ``api.safety.staff_screen``.

Run from the repo root::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/staff_screen.py [--model-dir DIR] [--out FILE]
        [--set NAME=PATH ...] [--show-errors]

Each JSONL line: ``id``, ``role`` (rep | msl | medical_reviewer), ``hcp_said`` (what the HCP wrote
before, oldest first), ``reply`` (the staff text) and ``findings`` (the expected kinds among
off_label, promotional, adverse_event, personal_data; empty = the reply is clean). The screen runs
as the console runs it: the products file ``knowledge/content/products.yaml``, the approved bodies
of ``knowledge/content/*.yaml`` as the approved content a rep's claims must come from, and the AE
screen the bot uses (``api.safety.classifier``).

Sets (default): ``blind`` = ``benchmarks/data/staff_replies_blind.jsonl`` (written by another
helper who saw only the product description, never these rules; evaluation only — its errors are
never printed) and ``own`` = ``benchmarks/data/staff_replies_own.jsonl`` (written by us while
building the rules: a regression set, not a headline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.safety.classifier import build_screen  # noqa: E402
from api.safety.products import load_catalogue  # noqa: E402
from api.safety.staff_screen import KINDS, screen_staff_reply  # noqa: E402

PRODUCTS = REPO / "knowledge" / "content" / "products.yaml"
CONTENT = REPO / "knowledge" / "content"
DATA = REPO / "benchmarks" / "data"
SETS = {"blind": DATA / "staff_replies_blind.jsonl", "own": DATA / "staff_replies_own.jsonl"}
BLIND_SETS = frozenset({"blind"})
# The sets' role words → the app's roles (the blind set writes "medical" for a medical reviewer).
ROLE_ALIASES = {"medical": "medical_reviewer", "medical_information": "medical_reviewer"}


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def approved_bodies(folder: Path = CONTENT) -> list[str]:
    out: list[str] = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "products.yaml":
            continue
        item = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if item.get("status") == "approved" and item.get("body"):
            out.append(str(item["body"]))
    return out


def ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def score(rows: Iterable[dict[str, Any]], predict: Any) -> tuple[dict[str, dict[str, int]], list[dict[str, Any]]]:
    counts = {k: {"tp": 0, "fp": 0, "fn": 0, "support": 0} for k in (*KINDS, "any")}
    errors: list[dict[str, Any]] = []
    for row in rows:
        expected = set(row.get("findings") or [])
        got = predict(row)
        for kind in KINDS:
            counts[kind]["support"] += kind in expected
            if kind in got and kind in expected:
                counts[kind]["tp"] += 1
            elif kind in got:
                counts[kind]["fp"] += 1
            elif kind in expected:
                counts[kind]["fn"] += 1
        any_expected, any_got = bool(expected), bool(got)
        counts["any"]["support"] += any_expected
        counts["any"]["tp"] += any_expected and any_got
        counts["any"]["fp"] += any_got and not any_expected
        counts["any"]["fn"] += any_expected and not any_got
        if got != expected:
            errors.append({"id": row.get("id"), "role": row.get("role"), "expected": sorted(expected),
                           "got": sorted(got), "reply": row.get("reply")})
    return counts, errors


def table(name: str, n: int, counts: dict[str, dict[str, int]]) -> list[str]:
    lines = [f"### {name} ({n} replies)", "", "| finding | support | precision | recall | tp | fp | fn |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for kind in (*KINDS, "any"):
        c = counts[kind]
        label = "any finding (reply flagged)" if kind == "any" else kind
        lines.append(f"| {label} | {c['support']} | {fmt(ratio(c['tp'], c['tp'] + c['fp']))} | "
                     f"{fmt(ratio(c['tp'], c['tp'] + c['fn']))} | {c['tp']} | {c['fp']} | {c['fn']} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--set", action="append", default=[], help="NAME=PATH (replaces the default sets)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--show-errors", action="store_true", help="list errors of the non-blind sets")
    parser.add_argument("--split-blind", action="store_true",
                        help="also score the blind set's halves: even lines (whose errors were read after run 1 "
                             "to improve the rules) and odd lines (never read: still held out)")
    args = parser.parse_args(argv)
    sets = dict(s.split("=", 1) for s in args.set) if args.set else {k: str(v) for k, v in SETS.items()}

    catalogue = load_catalogue(PRODUCTS)
    approved = approved_bodies()
    safety = build_screen(args.model_dir, PRODUCTS)
    safety.warm_up()

    def predict(row: dict[str, Any]) -> set[str]:
        role = str(row.get("role") or "rep")
        result = screen_staff_reply(row["reply"], role=ROLE_ALIASES.get(role, role),
                                    hcp_texts=row.get("hcp_said") or [], products=catalogue, approved=approved,
                                    safety=safety)
        return set(result.kinds)

    out = ["## Staff reply screen (api.safety.staff_screen)", ""]
    for name, path in sets.items():
        p = Path(path)
        if not p.exists():
            print(f"skipped {name}: {p} does not exist", file=sys.stderr)
            continue
        rows = load(p)
        if args.split_blind and name in BLIND_SETS:
            for half, label in ((0, "even lines, read after run 1"), (1, "odd lines, held out, never read")):
                part = [r for i, r in enumerate(rows) if i % 2 == half]
                out += table(f"{name} — {label}", len(part), score(part, predict)[0])
        started = time.perf_counter()
        counts, errors = score(rows, predict)
        per_reply_ms = (time.perf_counter() - started) * 1000 / max(1, len(rows))
        out += table(f"{name} — {p.relative_to(REPO) if p.is_relative_to(REPO) else p}", len(rows), counts)
        out += [f"Mean time per reply: {per_reply_ms:.1f} ms.", ""]
        if args.show_errors and name not in BLIND_SETS:
            for e in errors:
                out.append(f"- {e['id']} ({e['role']}): expected {e['expected']} got {e['got']}: {e['reply']}")
            out.append("")
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
