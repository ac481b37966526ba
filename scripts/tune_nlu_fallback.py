"""Pick the NLU fallback threshold on tuning data, never on the evaluation sets.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/tune_nlu_fallback.py [--target R] [--clinc 3100] [--folds 5]

``benchmarks/nlu_eval.py`` evaluates on ``bot/tests/nlu_test.yml`` and CLINC150 *val*; the
threshold is chosen here from two other sources:

- in scope: out-of-fold predictions of our own training data (``rasa test nlu
  --cross-validation --successes``; Rasa undoes the fallback there, so the top intent's
  confidence is kept), ``out_of_scope`` examples left out;
- out of scope: ``--clinc`` CLINC150 *train* utterances that are not in ``bot/data/nlu``
  (random, fixed seed), parsed by a model trained on all of ``bot/data/nlu`` with ``config.yml``.

A message falls back when its top intent's confidence is below the threshold. The script prints
out-of-scope recall (out_of_scope or fallback) and in-scope kept (neither) per threshold, and
the smallest threshold whose recall reaches ``--target``: by default the 0.90 bar plus two
standard errors of a recall of 0.90 measured on this many CLINC utterances (0.911 for 3,100),
so that the bar still holds on another sample of the same distribution (CLINC150 val).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.rasa import process  # noqa: E402
from api.settings import Settings  # noqa: E402
from benchmarks.nlu_eval import parse_all  # noqa: E402

CLINC_TRAIN = REPO.parent / "shared" / "eval" / "clinc150" / "train.jsonl"
NLU_DATA = REPO / "bot" / "data" / "nlu"


def training_texts() -> set[str]:
    texts = set()
    for path in NLU_DATA.glob("*.yml"):
        for block in yaml.safe_load(path.read_text()).get("nlu", []):
            for line in str(block.get("examples", "")).splitlines():
                if line.strip().startswith("- "):
                    texts.add(line.strip()[2:].strip().lower())
    return texts


def run(settings: Settings, *args: str) -> None:
    subprocess.run([str(process.rasa_bin(settings)), *args], check=True, cwd=REPO, env=process.rasa_env(settings),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=float, default=None, help="default: 0.90 + 2 standard errors")
    ap.add_argument("--clinc", type=int, default=3100)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    settings = Settings()
    seen = training_texts()
    pool = [row["text"] for row in (json.loads(x) for x in CLINC_TRAIN.read_text().splitlines() if x.strip())
            if row["text"].strip().lower() not in seen]
    clinc = random.Random(args.seed).sample(pool, min(args.clinc, len(pool)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run(settings, "test", "nlu", "--cross-validation", "--folds", str(args.folds), "--successes",
            "--config", "config.yml", "--nlu", str(NLU_DATA), "--out", str(work / "cv"))
        oof = [json.loads(p.read_text()) for p in (work / "cv" / "intent_successes.json",
                                                   work / "cv" / "intent_errors.json") if p.exists()]
        in_scope = [(r["intent_prediction"]["name"], float(r["intent_prediction"]["confidence"] or 0))
                    for rows in oof for r in rows if r["intent"] != "out_of_scope"]
        run(settings, "train", "nlu", "--config", "config.yml", "--nlu", str(NLU_DATA), "--out", str(work),
            "--fixed-model-name", "tune")
        out = [(str(r["top"]), float(str(r["top_confidence"])))
               for r in parse_all(settings, work / "tune.tar.gz", clinc, work)]
    target = args.target if args.target is not None else 0.90 + 2 * math.sqrt(0.90 * 0.10 / len(out))
    print(f"in scope (out-of-fold, {args.folds} folds): {len(in_scope)}; CLINC150 train, unseen: {len(out)}; "
          f"target out-of-scope recall {target:.3f}")
    print("threshold  oos_recall  in_scope_kept")
    chosen = None
    for step in range(30, 81):
        t = step / 100
        recall = sum(i == "out_of_scope" or c < t for i, c in out) / len(out)
        kept = sum(i != "out_of_scope" and c >= t for i, c in in_scope) / len(in_scope)
        print(f"{t:9.2f}  {recall:10.3f}  {kept:13.3f}")
        if chosen is None and recall >= target:
            chosen = (t, recall, kept)
    if chosen is None:
        print(f"no threshold up to 0.80 reaches out-of-scope recall {target:.3f}")
        return 1
    print(f"chosen: {chosen[0]:.2f} (oos recall {chosen[1]:.3f}, in-scope kept {chosen[2]:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
