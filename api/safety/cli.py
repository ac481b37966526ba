"""``concierge triage --input IN.jsonl --out OUT.jsonl``: the safety screen over a file.

Input lines: ``{"id": str, "text": str}`` (blank lines are skipped). Output lines:
``{"id": str, "adverse_event": bool, "off_label": bool, "route": "bot"|"medical"|"safety"|"rep"}``
in input order. Any bad input line fails the whole run (exit 1, every bad line named on
stderr) and nothing is written: the output goes to a temporary file renamed into place.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

MAX_REPORTED_ERRORS = 20


class TriageInputError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def read_items(path: Path) -> list[tuple[str, str]]:
    """(id, text) per non-blank line; raises TriageInputError naming every bad line."""
    items: list[tuple[str, str]] = []
    errors: list[str] = []
    with path.open(encoding="utf-8", errors="strict") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"line {lineno}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                errors.append(f"line {lineno}: expected a JSON object with 'id' and 'text'")
                continue
            missing = [k for k in ("id", "text") if k not in obj]
            if missing:
                errors.append(f"line {lineno}: missing field(s) {', '.join(repr(m) for m in missing)}")
                continue
            if not isinstance(obj["id"], str):
                errors.append(f"line {lineno}: 'id' must be a string, got {type(obj['id']).__name__}")
                continue
            if not isinstance(obj["text"], str):
                errors.append(f"line {lineno}: 'text' must be a string, got {type(obj['text']).__name__}")
                continue
            items.append((obj["id"], obj["text"]))
    if errors:
        raise TriageInputError(errors)
    return items


def triage_line(item_id: str, result: Any) -> dict[str, Any]:
    return {
        "id": item_id,
        "adverse_event": bool(result.adverse_event),
        "off_label": bool(result.off_label),
        "route": result.route,
    }


def write_atomically(path: Path, lines: list[dict[str, Any]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for obj in lines:
                fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_triage(args: argparse.Namespace) -> int:
    from api.safety.classifier import build_screen
    from api.settings import Settings

    in_path: Path = args.input
    out_path: Path = args.out
    if not in_path.is_file():
        print(f"triage: input file not found: {in_path}", file=sys.stderr)
        return 1
    if not out_path.parent.is_dir():
        print(f"triage: output directory does not exist: {out_path.parent}", file=sys.stderr)
        return 1
    try:
        items = read_items(in_path)
    except TriageInputError as exc:
        shown = exc.errors[:MAX_REPORTED_ERRORS]
        for err in shown:
            print(f"triage: {in_path}: {err}", file=sys.stderr)
        if len(exc.errors) > len(shown):
            print(f"triage: ... and {len(exc.errors) - len(shown)} more bad line(s)", file=sys.stderr)
        print("triage: no output written", file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:
        print(f"triage: {in_path}: not UTF-8 text ({exc.reason})", file=sys.stderr)
        return 1

    settings = Settings()
    model_dir: Path = args.model_dir or (settings.var_dir / "models")
    products: Path | None = args.products
    if products is None:
        candidate = settings.library_path / "products.yaml"
        products = candidate if candidate.is_file() else None
    screen = build_screen(model_dir, products)
    lines = [triage_line(item_id, screen.screen(text)) for item_id, text in items]
    write_atomically(out_path, lines)
    counts: dict[str, int] = {}
    for line in lines:
        counts[line["route"]] = counts.get(line["route"], 0) + 1
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"triage: {len(lines)} message(s) → {out_path} ({summary or 'empty'})", file=sys.stderr)
    return 0


def cmd_safety_train(args: argparse.Namespace) -> int:
    """Build (or confirm) the cached model artifact, e.g. at image build or before ``make run``."""
    from api.safety.classifier import load_or_train, training_fingerprint
    from api.settings import Settings

    model_dir: Path = args.model_dir or (Settings().var_dir / "models")
    model = load_or_train(model_dir)
    meta = model.meta
    print(
        f"safety model {training_fingerprint()[:20]} in {model_dir}: threshold {model.threshold:.3f}, "
        f"{meta.get('rows', '?')} training rows, out-of-fold recall {meta.get('oof_recall', 0):.3f}"
    )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "triage",
        help="screen messages for adverse events / off-label use and route them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", required=True, type=Path, help="JSONL: {\"id\": str, \"text\": str} per line")
    parser.add_argument("--out", required=True, type=Path, help="JSONL output (written atomically)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="where the trained screen is cached (default: <var_dir>/models)")
    parser.add_argument("--products", type=Path, default=None,
                        help="products.yaml with approved indications (default: <library_path>/products.yaml)")
    parser.set_defaults(func=cmd_triage)

    train = subparsers.add_parser(
        "safety-train", help="train (or load) the cached adverse-event model of the safety screen"
    )
    train.add_argument("--model-dir", type=Path, default=None, help="default: <var_dir>/models")
    train.set_defaults(func=cmd_safety_train)
