"""Build ``api/safety/data/nlu_negatives.jsonl``: HCP-style messages that are not reports, for the AE model.

The NLU training data (``bot/data/nlu/*.yml``) holds a few thousand messages written the way HCPs
write to the concierge — greetings, thanks, feedback, ratings and their reasons, preferences, service
asks, product questions. None of those intents is a report, yet the AE model (fitted mostly on PsyTAR
drug reviews) read one in fourteen of them as an adverse event. They become negatives of the AE model,
except:
- ``report_adverse_event`` (reports), ``inform`` (bare details, some of them answers about a case) and
  the CLINC150 sample (already in ``clinc_negatives.jsonl``);
- any message in which the rules find evidence of an event (``rules.has_event_evidence``: someone, and
  something happening to them) — a rating reason may still carry a report, and teaching the model
  otherwise would cost recall.

Deterministic (sorted files, file order); ``--check`` exits 1 when the committed file is out of date
(run by the test suite, so a change to the NLU data cannot silently leave the two apart).

    .venv/bin/python scripts/build_safety_negatives.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.safety import rules  # noqa: E402

NLU_DIR = REPO / "bot" / "data" / "nlu"
OUT = REPO / "api" / "safety" / "data" / "nlu_negatives.jsonl"
EXCLUDED_INTENTS = frozenset({"report_adverse_event", "inform"})
EXCLUDED_FILES = frozenset({"out_of_scope_clinc.yml"})
_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


def examples(nlu_dir: Path = NLU_DIR) -> list[tuple[str, str]]:
    """(intent, text) of every training example, entity annotations reduced to their words."""
    out: list[tuple[str, str]] = []
    for path in sorted(nlu_dir.glob("*.yml")):
        if path.name in EXCLUDED_FILES:
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for block in data.get("nlu", []) or []:
            intent = block.get("intent")
            if not intent:
                continue
            for line in str(block.get("examples") or "").splitlines():
                line = line.strip()
                if line.startswith("- "):
                    out.append((str(intent), _ANNOTATION.sub(r"\1", line[2:]).strip()))
    return out


def negatives(nlu_dir: Path = NLU_DIR) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    for intent, text in examples(nlu_dir):
        norm = rules.normalise(text)
        if intent in EXCLUDED_INTENTS or not norm or norm in seen or rules.has_event_evidence(norm):
            continue
        seen.add(norm)
        rows.append({"id": f"nlu-{len(rows) + 1:05d}", "intent": intent, "text": text, "adverse_event": False})
    return rows


def render(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file is out of date")
    args = ap.parse_args(argv)
    text = render(negatives())
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.is_file() else ""
        if current != text:
            print(f"{OUT.relative_to(REPO)} is out of date: run scripts/build_safety_negatives.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} negatives to {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
