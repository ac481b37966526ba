"""Safety-screen benchmark: one table of the figures the screen is judged on.

Run from the repo root::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/safety_screen.py [--model-dir DIR] [--out FILE]

Headline rows (data nobody here fitted on):

- PsyTAR dev (``../shared/eval/psytar/dev.jsonl``): AE recall / precision. The model is fitted on
  PsyTAR *train* only (shipped under ``api/safety/data/``); its threshold is chosen on out-of-fold
  probabilities of the training data. Dev is never read by training.
- Blind special situations (``benchmarks/blind/special_situations.jsonl``, FROZEN): every line must
  open a case; recall overall and per category (as the set labels it).
- Blind benign HCP (``benchmarks/blind/benign_hcp.jsonl``, FROZEN): no line may open a case; the
  false-case rate. Each line is screened with its ``after`` field as the form slot the bot had just
  asked for (``none`` = free text).

The blind files are evaluation only: this script prints aggregate figures for them and never their
errors (``--show-errors`` lists errors of our own sets only).

Own regression rows (written by us, labelled as such, never headline): the HCP held-out set and the
own special-situation / benign sets under ``benchmarks/data/``, and the TUNING sets
``benchmarks/data/special_tune_blind.jsonl``, ``special_tune_v2.jsonl`` and ``safety_benign_turns_tune.jsonl``
(written blind by helpers from the product description, then used to tune the rules and the model's
weights — the special sets' reports are also training rows: tuning figures, not estimates).

``--score FILE`` scores one labelled file only (``label`` = a category or ``benign``; the own sets'
``category`` / ``kind`` shapes work too): recall per category, how many of the caught lines carry the
right category, and the benign false-case rate; ``--show-errors`` lists that file's errors (refused for
files under ``benchmarks/blind/``).

Latency: wall time of one ``screen()`` call per message over every row above, model loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.safety.classifier import RuleModelScreen, build_screen  # noqa: E402
from api.safety.screen import ScreenContext  # noqa: E402

PSYTAR_DEV = REPO.parent / "shared" / "eval" / "psytar" / "dev.jsonl"
BLIND = REPO / "benchmarks" / "blind"
BLIND_SPECIAL = BLIND / "special_situations.jsonl"
BLIND_BENIGN = BLIND / "benign_hcp.jsonl"
OWN = REPO / "benchmarks" / "data"
HELDOUT = OWN / "safety_heldout.jsonl"
OWN_SPECIAL = OWN / "safety_special_own.jsonl"
OWN_BENIGN = OWN / "safety_benign_own.jsonl"
TUNE_SPECIAL = OWN / "special_tune_blind.jsonl"
# Tuning sets (written blind by helpers, then tuned on; the special-situation reports of both special sets
# are also training rows of the model since 2026-12-07): (label, file)
TUNING_SETS = (("Special tuning set 1", TUNE_SPECIAL), ("Special tuning set 2", OWN / "special_tune_v2.jsonl"),
               ("Conversation turns that are not reports", OWN / "safety_benign_turns_tune.jsonl"))
FIXTURE_PRODUCTS = REPO / "tests" / "safety" / "data" / "products.yaml"


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def context_of(row: dict[str, Any]) -> ScreenContext | None:
    after = row.get("after")
    if not after or after == "none":
        return None
    return ScreenContext(asked=str(after))


class Timer:
    def __init__(self) -> None:
        self.ms: list[float] = []

    def run(self, screen: RuleModelScreen, row: dict[str, Any]) -> bool:
        start = time.perf_counter()
        result = screen.screen(str(row["text"]), context=context_of(row))
        self.ms.append((time.perf_counter() - start) * 1000)
        return result.adverse_event

    def p95(self) -> float:
        s = sorted(self.ms)
        return s[min(len(s) - 1, int(0.95 * len(s)))] if s else 0.0


def binary(screen: RuleModelScreen, rows: list[dict[str, Any]], timer: Timer,
           errors: list[str] | None) -> dict[str, float]:
    tp = fp = fn = 0
    for row in rows:
        flagged = timer.run(screen, row)
        truth = bool(row.get("adverse_event", True))
        if flagged and truth:
            tp += 1
        elif flagged:
            fp += 1
        elif truth:
            fn += 1
        if errors is not None and flagged != truth:
            errors.append(("FALSE+  " if flagged else "MISSED  ") + str(row["text"]))
    return {"n": len(rows), "pos": tp + fn, "recall": tp / max(tp + fn, 1), "precision": tp / max(tp + fp, 1),
            "fp": fp, "fn": fn}


def must_open(screen: RuleModelScreen, rows: list[dict[str, Any]], timer: Timer,
              errors: list[str] | None) -> tuple[float, dict[str, tuple[int, int]]]:
    per: dict[str, list[int]] = {}
    for row in rows:
        hit = timer.run(screen, row)
        cell = per.setdefault(str(row.get("category", "?")), [0, 0])
        cell[0] += int(hit)
        cell[1] += 1
        if errors is not None and not hit:
            errors.append(f"MISSED  [{row.get('category')}] {row['text']}")
    caught = sum(c[0] for c in per.values())
    total = sum(c[1] for c in per.values())
    return caught / max(total, 1), {k: (v[0], v[1]) for k, v in sorted(per.items())}


def must_not_open(screen: RuleModelScreen, rows: list[dict[str, Any]], timer: Timer,
                  errors: list[str] | None) -> tuple[float, Counter[str]]:
    false_by_kind: Counter[str] = Counter()
    for row in rows:
        if timer.run(screen, row):
            false_by_kind[str(row.get("kind", "?"))] += 1
            if errors is not None:
                errors.append(f"FALSE+  [{row.get('after')}/{row.get('kind')}] {row['text']}")
    return sum(false_by_kind.values()) / max(len(rows), 1), false_by_kind


# Labels of the tuning set (and the blind set's spelling) → the screen's category codes.
LABEL_TO_CATEGORY = {
    "pregnancy": "pregnancy_exposure", "pregnancy_or_breastfeeding": "pregnancy_exposure",
    "misuse_abuse": "misuse", "misuse_or_abuse": "misuse", "occupational": "occupational_exposure",
    "offlabel_outcome": "off_label_outcome", "off_label_with_outcome": "off_label_outcome",
    "adverse_event": "side_effect",
}


def labelled(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """(row, category code or "benign") for the label shapes our files use."""
    out: list[tuple[dict[str, Any], str]] = []
    for row in rows:
        label = str(row.get("label", row.get("category", "benign")))
        out.append((row, label if label == "benign" else LABEL_TO_CATEGORY.get(label, label)))
    return out


def score_file(screen: RuleModelScreen, rows: list[dict[str, Any]], timer: Timer,
               errors: list[str] | None) -> tuple[dict[str, tuple[int, int, int]], tuple[int, int]]:
    """Per category (caught, caught with that category, total) and benign (false cases, total)."""
    per: dict[str, list[int]] = {}
    benign = [0, 0]
    for row, label in labelled(rows):
        start = time.perf_counter()
        result = screen.screen(str(row["text"]), context=context_of(row))
        timer.ms.append((time.perf_counter() - start) * 1000)
        if label == "benign":
            benign[1] += 1
            if result.adverse_event:
                benign[0] += 1
                if errors is not None:
                    errors.append(f"FALSE+  {result.ae_categories} {row['text']}")
            continue
        cell = per.setdefault(label, [0, 0, 0])
        cell[2] += 1
        if result.adverse_event:
            cell[0] += 1
            cell[1] += int(label in result.ae_categories)
            if errors is not None and label not in result.ae_categories:
                errors.append(f"WRONGCAT [{label}] got {result.ae_categories} {row['text']}")
        elif errors is not None:
            errors.append(f"MISSED  [{label}] {row['text']}")
    return {k: (v[0], v[1], v[2]) for k, v in sorted(per.items())}, (benign[0], benign[1])


def score_lines(name: str, per: dict[str, tuple[int, int, int]], benign: tuple[int, int]) -> list[str]:
    lines: list[str] = []
    caught = sum(v[0] for v in per.values())
    right = sum(v[1] for v in per.values())
    total = sum(v[2] for v in per.values())
    if total:
        lines.append(f"{name}: special situations recall {caught / total:.3f} ({caught}/{total}); "
                     f"right category {right}/{caught}")
        lines.append("  per category (caught/right category/n): " + ", ".join(
            f"{k} {c}/{r}/{t}" for k, (c, r, t) in per.items()))
    if benign[1]:
        lines.append(f"{name}: benign false cases {benign[0] / benign[1]:.1%} ({benign[0]}/{benign[1]})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--products", type=Path, default=None,
                        help="products.yaml (default: knowledge/content/products.yaml, else the test fixture)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--show-errors", action="store_true", help="errors of OUR OWN sets (never the blind ones)")
    parser.add_argument("--score", type=Path, default=None,
                        help="score only this labelled jsonl (label = category | benign) and exit")
    parser.add_argument("--cascade", action="store_true",
                        help="EXPERIMENT: put the MiniLM veto of model-only hits (benchmarks/safety_cascade.py, "
                             "not shipped) in front of the screen")
    args = parser.parse_args()
    if args.score is not None and args.show_errors and args.score.resolve().is_relative_to(BLIND.resolve()):
        parser.error("--show-errors is refused for the blind sets")

    products = args.products
    if products is None:
        real = REPO / "knowledge" / "content" / "products.yaml"
        products = real if real.is_file() else FIXTURE_PRODUCTS
    screen: Any = build_screen(args.model_dir, products)
    if args.cascade:
        from benchmarks.safety_cascade import build_cascade_screen

        screen = build_cascade_screen(screen)
    t0 = time.perf_counter()
    screen.warm_up()
    warm = time.perf_counter() - t0
    timer = Timer()
    own_errors: list[str] | None = [] if args.show_errors else None
    if args.score is not None:
        per, benign_fp = score_file(screen, load(args.score), timer, own_errors)
        print("\n".join(score_lines(args.score.name, per, benign_fp)))
        print(f"p95 {timer.p95():.2f} ms over {len(timer.ms)} lines")
        if own_errors:
            print("\n".join(own_errors), file=sys.stderr)
        return 0

    rows_md: list[str] = []
    targets: list[tuple[str, bool]] = []
    if PSYTAR_DEV.is_file():
        r = binary(screen, load(PSYTAR_DEV), timer, None)
        rows_md.append(f"| PsyTAR dev (headline) | {r['n']} | recall {r['recall']:.3f} / precision "
                       f"{r['precision']:.3f} (FN {r['fn']}, FP {r['fp']}) | recall ≥ 0.97 at precision ≥ 0.65 |")
        targets.append(("PsyTAR dev", r["recall"] >= 0.97 and r["precision"] >= 0.65))
    per_cat: dict[str, tuple[int, int]] = {}
    if BLIND_SPECIAL.is_file():
        rec, per_cat = must_open(screen, load(BLIND_SPECIAL), timer, None)
        n = sum(v[1] for v in per_cat.values())
        right = sum(v[1] for v in score_file(screen, load(BLIND_SPECIAL), Timer(), None)[0].values())
        rows_md.append(f"| Blind special situations (headline) | {n} | recall {rec:.3f}; caught with the "
                       f"right category {right}/{sum(v[0] for v in per_cat.values())} | ≥ 0.97 |")
        targets.append(("special situations", rec >= 0.97))
    false_kinds: Counter[str] = Counter()
    if BLIND_BENIGN.is_file():
        benign = load(BLIND_BENIGN)
        rate, false_kinds = must_not_open(screen, benign, timer, None)
        rows_md.append(f"| Blind benign HCP (headline) | {len(benign)} | false cases {rate:.1%} "
                       f"({sum(false_kinds.values())}) | ≤ 3 % |")
        targets.append(("benign", rate <= 0.03))
    own_lines: list[str] = []
    if HELDOUT.is_file():
        r = binary(screen, load(HELDOUT), timer, own_errors)
        own_lines.append(f"| HCP held-out (own) | {r['n']} | recall {r['recall']:.3f} / precision "
                         f"{r['precision']:.3f} (FN {r['fn']}, FP {r['fp']}) | regression |")
    if OWN_SPECIAL.is_file():
        rec, _ = must_open(screen, load(OWN_SPECIAL), timer, own_errors)
        own_lines.append(f"| Special situations (own) | {len(load(OWN_SPECIAL))} | recall {rec:.3f} | regression |")
    if OWN_BENIGN.is_file():
        own_benign = load(OWN_BENIGN)
        rate, _ = must_not_open(screen, own_benign, timer, own_errors)
        own_lines.append(f"| Benign HCP (own) | {len(own_benign)} | false cases {rate:.1%} | regression |")
    tune_lines: list[str] = []
    for label, path in TUNING_SETS:
        if not path.is_file():
            continue
        per, benign_fp = score_file(screen, load(path), timer, own_errors)
        caught = sum(v[0] for v in per.values())
        right = sum(v[1] for v in per.values())
        total = sum(v[2] for v in per.values())
        if total:
            own_lines.append(f"| {label} (TUNING, written blind; its reports trained on) | {total} | "
                             f"recall {caught / total:.3f}, right category {right}/{caught} | tuned on |")
        if benign_fp[1]:
            own_lines.append(f"| {label}: benign (TUNING) | {benign_fp[1]} | false cases "
                             f"{benign_fp[0] / benign_fp[1]:.1%} | tuned on |")
        tune_lines += score_lines(label, per, benign_fp)
    p95 = timer.p95()
    targets.append(("p95", p95 <= 15.0))
    shown = products.relative_to(REPO) if products.is_relative_to(REPO) else products
    meta = screen.model.meta
    lines = [
        "| set | n | result | target |",
        "|---|---|---|---|",
        *rows_md,
        f"| screen latency, all rows | {len(timer.ms)} | p50 {statistics.median(timer.ms):.2f} ms / "
        f"p95 {p95:.2f} ms | p95 ≤ 15 ms |",
        *own_lines,
        "",
        "Targets met: " + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in targets),
        "",
    ]
    if per_cat:
        lines.append("Blind special situations, caught per category: " + ", ".join(
            f"{k} {c}/{t}" for k, (c, t) in per_cat.items()))
    if false_kinds:
        lines.append("Blind benign false cases per kind: " + ", ".join(
            f"{k} {v}" for k, v in sorted(false_kinds.items())))
    lines += ["", *tune_lines]
    lines += [
        "",
        f"Products file `{shown}`; model threshold {screen.model.threshold:.3f} (chosen on out-of-fold "
        f"probabilities of the training data: OOF recall {meta.get('oof_recall', 0):.3f}, precision "
        f"{meta.get('oof_precision', 0):.3f}); model load/train {warm:.1f} s.",
    ]
    if args.cascade:
        cm = screen.veto.cascade.meta
        lines.append(
            f"EXPERIMENT cascade (MiniLM veto of model-only hits): stage-1 gate {screen.veto.cascade.gate:.3f}, veto "
            f"below {screen.veto.cascade.veto_below:.4f} (PsyTAR train OOF: recall {cm.get('oof_recall', 0):.3f}, "
            f"precision {cm.get('oof_precision', 0):.3f} vs {cm.get('oof_precision_stage1_alone', 0):.3f} for stage 1 "
            f"alone; build {cm.get('build_seconds', 0)} s); MiniLM run on {screen.checked} messages, "
            f"{screen.vetoed} vetoed.")
    text = "\n".join(lines)
    print(text)
    if own_errors:
        print("\n".join(own_errors), file=sys.stderr)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
