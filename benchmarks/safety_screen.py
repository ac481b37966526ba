"""Safety-screen benchmark: AE recall / precision / F1 and per-message latency.

Run from the repo root::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/safety_screen.py [--model-dir DIR] [--out FILE]

Sets: PsyTAR dev (``../shared/eval/psytar/dev.jsonl``; the model is trained on PsyTAR *train*
only, shipped under ``api/safety/data/``) and our own held-out HCP set
(``benchmarks/data/safety_heldout.jsonl``, never used for training or tuning). Latency is the
wall time of one ``screen(text)`` call per message, model already loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.safety.classifier import build_screen  # noqa: E402

PSYTAR_DEV = REPO.parent / "shared" / "eval" / "psytar" / "dev.jsonl"
HELDOUT = REPO / "benchmarks" / "data" / "safety_heldout.jsonl"
FIXTURE_PRODUCTS = REPO / "tests" / "safety" / "data" / "products.yaml"


def load(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def evaluate(screen: object, rows: list[dict[str, object]]) -> dict[str, float]:
    tp = fp = fn = tn = 0
    latencies: list[float] = []
    errors: list[tuple[str, bool]] = []
    for row in rows:
        start = time.perf_counter()
        result = screen.screen(str(row["text"]))  # type: ignore[attr-defined]
        latencies.append((time.perf_counter() - start) * 1000)
        truth = bool(row["adverse_event"])
        if result.adverse_event and truth:
            tp += 1
        elif result.adverse_event:
            fp += 1
            errors.append((str(row["text"]), False))
        elif truth:
            fn += 1
            errors.append((str(row["text"]), True))
        else:
            tn += 1
    recall = tp / max(tp + fn, 1)
    precision = tp / max(tp + fp, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    latencies.sort()
    return {
        "n": len(rows), "positives": tp + fn, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "recall": recall, "precision": precision, "f1": f1,
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "errors": errors,  # type: ignore[dict-item]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--products", type=Path, default=None,
                        help="products.yaml (default: knowledge/content/products.yaml, else the test fixture)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS-safety.md")
    parser.add_argument("--show-errors", action="store_true")
    args = parser.parse_args()

    products = args.products
    if products is None:
        real = REPO / "knowledge" / "content" / "products.yaml"
        products = real if real.is_file() else FIXTURE_PRODUCTS
    screen = build_screen(args.model_dir, products)
    t0 = time.perf_counter()
    screen.warm_up()
    warm = time.perf_counter() - t0

    sets = []
    if PSYTAR_DEV.is_file():
        sets.append(("PsyTAR dev (612)", load(PSYTAR_DEV)))
    sets.append(("HCP held-out (ours)", load(HELDOUT)))
    shown = products.relative_to(REPO) if products.is_relative_to(REPO) else products
    lines = [
        "# Safety screen benchmark",
        "",
        f"Command: `.venv/bin/python benchmarks/safety_screen.py` — products file: `{shown}`",
        f"Model: TF-IDF word+char → logistic regression, threshold {screen.model.threshold:.3f} "
        f"(out-of-fold recall target {screen.model.meta.get('target_recall', 0.965)}), unioned with lexical rules.",
        f"Model load/train at first use: {warm:.1f} s.",
        "",
        "| set | n | AE positives | recall | precision | F1 | FP | FN | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in sets:
        r = evaluate(screen, rows)
        lines.append(
            f"| {name} | {r['n']} | {r['positives']} | {r['recall']:.3f} | {r['precision']:.3f} | "
            f"{r['f1']:.3f} | {r['fp']} | {r['fn']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} |"
        )
        if args.show_errors:
            for text, missed in r["errors"]:  # type: ignore[attr-defined]
                print(("MISSED  " if missed else "FALSE+  ") + f"[{name}] {text}", file=sys.stderr)
    meta = screen.model.meta
    lines += [
        "",
        "Targets: recall ≥ 0.95, precision ≥ 0.60, p95 ≤ 15 ms per message (2 shared CPU cores).",
        "",
        "Notes",
        "",
        f"- Training: {meta.get('rows')} sentences ({meta.get('positives')} positive) from `api/safety/data/` "
        "(PsyTAR train, our HCP examples, CLINC150 negatives); threshold picked on 5-fold out-of-fold "
        f"probabilities (OOF recall {meta.get('oof_recall', 0):.3f}, OOF precision "
        f"{meta.get('oof_precision', 0):.3f}).",
        "- PsyTAR dev is never trained on. The HCP held-out set (`benchmarks/data/safety_heldout.jsonl`, "
        "written before the first run) is never trained on; its errors were looked at once during "
        "development, which led to adding generic negatives (CLINC150 chit-chat, 'my patient' product "
        "questions) to the training data — none of its sentences.",
        "- A sentence counts as flagged when `screen(text).adverse_event` is true (model ∪ rules, minus the "
        "general-question veto). Latency = one `screen()` call, model loaded.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
