"""Write bot/data/nlu/out_of_scope_clinc.yml: out_of_scope examples sampled from CLINC150 *train*.

    .venv/bin/python scripts/sample_clinc_oos.py [--per-intent 4] [--oos 20] [--seed 13]

Keeps the examples already in the file and tops every CLINC intent up to --per-intent examples
(CLINC's own "oos" class up to --oos), chosen at random with a fixed seed. CLINC's small-talk intents
that our own small-talk intents cover (greeting, yes, no, thank_you, are_you_a_bot, ...) are skipped.
CLINC150 *val* is never sampled: benchmarks/nlu_eval.py evaluates on it.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO.parent / "shared" / "eval" / "clinc150" / "train.jsonl"
OUT = REPO / "bot" / "data" / "nlu" / "out_of_scope_clinc.yml"
SKIP = {"greeting", "goodbye", "thank_you", "are_you_a_bot", "yes", "no", "maybe", "what_is_your_name",
        "how_old_are_you", "who_made_you", "what_can_i_ask_you", "where_are_you_from", "do_you_have_pets",
        "what_are_your_hobbies", "who_do_you_work_for"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-intent", type=int, default=4)
    ap.add_argument("--oos", type=int, default=20)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    by_intent: dict[str, list[str]] = defaultdict(list)
    for line in TRAIN.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row["intent"] not in SKIP and row["text"] not in by_intent[row["intent"]]:
                by_intent[row["intent"]].append(row["text"])
    current = []
    if OUT.exists():
        data = yaml.safe_load(OUT.read_text())
        current = [ln.strip()[2:] for ln in data["nlu"][0]["examples"].splitlines() if ln.strip().startswith("- ")]
    have = set(current)
    rng = random.Random(args.seed)
    chosen = list(current)
    for intent in sorted(by_intent):
        pool = by_intent[intent]
        want = args.oos if intent == "oos" else args.per_intent
        n_have = sum(t in have for t in pool)
        extra = [t for t in pool if t not in have]
        rng.shuffle(extra)
        chosen += extra[: max(0, want - n_have)]
    lines = ["version: \"3.1\"",
             "# Out-of-scope examples sampled from CLINC150 *train* (CC BY 3.0); evaluation uses val only.",
             f"# scripts/sample_clinc_oos.py --per-intent {args.per_intent} --oos {args.oos} --seed {args.seed}",
             "nlu:", "  - intent: out_of_scope", "    examples: |"]
    lines += [f"      - {t}" for t in chosen]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(chosen)} out_of_scope examples ({len(current)} kept) -> {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
