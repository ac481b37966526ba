"""NLU quality of the trained Rasa model on held-out data; writes benchmarks/RESULTS-nlu.md.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/nlu_eval.py [--model PATH] [--clinc-limit N]

1. ``rasa test nlu`` on ``bot/tests/nlu_test.yml`` (written for evaluation, never trained on):
   intent macro-F1 from Rasa's own ``intent_report.json`` (target >= 0.90).
2. Out-of-scope recall on CLINC150 *val* (``../shared/eval/clinc150/val.jsonl``; the training
   data only samples CLINC150 *train*): every CLINC utterance is off-topic for us, so
   ``out_of_scope`` or ``nlu_fallback`` is correct and any product / request / feedback intent
   is wrong. Reported strictly, and with CLINC's small-talk intents (greeting, thank_you,
   are_you_a_bot, ...) allowed to land on our matching small-talk intents (which never answer
   anything). The in-scope test set is mixed in to show the in-scope utterances are not
   swallowed by out_of_scope (in-scope kept = not predicted out_of_scope / fallback).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.rasa import process  # noqa: E402
from api.settings import Settings  # noqa: E402

TEST_SET = REPO / "bot" / "tests" / "nlu_test.yml"
CLINC_VAL = REPO.parent / "shared" / "eval" / "clinc150" / "val.jsonl"
RESULTS = REPO / "benchmarks" / "RESULTS-nlu.md"

OFF_TOPIC_OK = {"out_of_scope", "nlu_fallback"}
SMALL_TALK_OK = {"greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "chitchat"}
CLINC_SMALL_TALK = {"greeting", "goodbye", "thank_you", "are_you_a_bot", "yes", "no", "maybe",
                    "what_is_your_name", "how_old_are_you", "who_made_you", "what_can_i_ask_you",
                    "where_are_you_from", "do_you_have_pets", "what_are_your_hobbies",
                    "who_do_you_work_for", "meaning_of_life", "tell_joke", "fun_fact"}

# Runs inside Rasa's own virtualenv: parse every line of IN with the model, write OUT.
PARSER = r"""
import asyncio, json, sys, time
from rasa.core.agent import Agent
async def main(model, src, dst):
    agent = Agent.load(model)
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            text = json.loads(line)["text"]
            started = time.perf_counter()
            parsed = await agent.parse_message(text)
            ms = (time.perf_counter() - started) * 1000
            # The best intent other than nlu_fallback, whatever the threshold (scripts/tune_nlu_fallback.py).
            top = [r for r in parsed.get("intent_ranking", []) if r["name"] != "nlu_fallback"][0]
            out.write(json.dumps({"text": text, "intent": parsed["intent"]["name"],
                                  "confidence": parsed["intent"]["confidence"], "ms": ms,
                                  "top": top["name"], "top_confidence": top["confidence"]}) + "\n")
asyncio.run(main(*sys.argv[1:4]))
"""


def test_examples() -> list[tuple[str, str]]:
    data = yaml.safe_load(TEST_SET.read_text())
    rows = []
    for block in data["nlu"]:
        for line in block["examples"].splitlines():
            if line.strip().startswith("- "):
                rows.append((line.strip()[2:], block["intent"]))
    return rows


def rasa_test_nlu(settings: Settings, model: Path, out: Path) -> dict[str, object]:
    subprocess.run([str(process.rasa_bin(settings)), "test", "nlu", "--nlu", str(TEST_SET), "--model", str(model),
                    "--out", str(out)], check=True, cwd=REPO, env=process.rasa_env(settings),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report: dict[str, object] = json.loads((out / "intent_report.json").read_text())
    return report


def parse_all(settings: Settings, model: Path, texts: list[str], work: Path) -> list[dict[str, object]]:
    src, dst = work / "in.jsonl", work / "out.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    python = settings.rasa_venv / "bin" / "python"
    subprocess.run([str(python), "-c", PARSER, str(model), str(src), str(dst)], check=True, cwd=REPO,
                   env=process.rasa_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [json.loads(line) for line in dst.read_text().splitlines()]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--clinc-limit", type=int, default=0, help="0 = all of CLINC150 val")
    args = ap.parse_args()
    settings = Settings()
    model = args.model or process.ensure_model(settings)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = rasa_test_nlu(settings, model, work / "nlu")
        macro = report["macro avg"]
        assert isinstance(macro, dict)
        per_intent = {k: v for k, v in report.items() if isinstance(v, dict) and "f1-score" in v
                      and k not in ("macro avg", "weighted avg", "micro avg")}
        clinc = [json.loads(line) for line in CLINC_VAL.read_text().splitlines() if line.strip()]
        if args.clinc_limit:
            clinc = clinc[: args.clinc_limit]
        tests = test_examples()
        parsed = parse_all(settings, model, [c["text"] for c in clinc] + [t for t, _ in tests], work)
    clinc_pred, test_pred = parsed[: len(clinc)], parsed[len(clinc):]
    strict = sum(p["intent"] in OFF_TOPIC_OK for p in clinc_pred)
    lenient = sum(p["intent"] in OFF_TOPIC_OK or (c["intent"] in CLINC_SMALL_TALK and p["intent"] in SMALL_TALK_OK)
                  for c, p in zip(clinc, clinc_pred, strict=True))
    wrong = Counter(str(p["intent"]) for c, p in zip(clinc, clinc_pred, strict=True)
                    if p["intent"] not in OFF_TOPIC_OK
                    and not (c["intent"] in CLINC_SMALL_TALK and p["intent"] in SMALL_TALK_OK))
    in_scope = [(t, i, p) for (t, i), p in zip(tests, test_pred, strict=True) if i != "out_of_scope"]
    kept = sum(p["intent"] not in OFF_TOPIC_OK for _, _, p in in_scope)
    mixed_total = len(clinc) + len(in_scope)
    mixed_ok = strict + kept
    parse_ms = sorted(float(str(p["ms"])) for p in parsed)
    elapsed = time.perf_counter() - started

    lines = [
        "# NLU evaluation (Rasa 3.6 model)",
        "",
        f"Model `{model.name}`; command `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/nlu_eval.py`; "
        f"{elapsed:.0f} s.",
        "",
        "## Intent classification — held-out test set `bot/tests/nlu_test.yml` (`rasa test nlu`)",
        "",
        f"- examples: {len(tests)} ({len(per_intent)} intents, >= 20 each, HCP wording, typos)",
        f"- **intent macro-F1: {macro['f1-score']:.3f}** (target >= 0.90); "
        f"accuracy {report.get('accuracy', 0):.3f}",
        "",
        "| intent | precision | recall | F1 | n |",
        "|---|---|---|---|---|",
    ]
    for name, m in sorted(per_intent.items()):
        lines.append(f"| {name} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1-score']:.2f} | {m['support']} |")
    lines += [
        "",
        "## Out of scope — CLINC150 val (never trained on) mixed with the in-scope test set",
        "",
        f"- CLINC150 val utterances: {len(clinc)}",
        f"- **out-of-scope recall (strict: out_of_scope or nlu_fallback): {strict / len(clinc):.3f}** "
        "(target >= 0.90)",
        f"- out-of-scope recall, CLINC small talk allowed on our small-talk intents: {lenient / len(clinc):.3f}",
        f"- in-scope test utterances kept in scope: {kept}/{len(in_scope)} ({kept / len(in_scope):.3f})",
        f"- mixed set ({mixed_total} utterances) routed correctly (strict): {mixed_ok / mixed_total:.3f}",
        "- CLINC utterances wrongly taken as ours, by predicted intent: "
        + ", ".join(f"{k} {v}" for k, v in wrong.most_common()),
        "",
        "## NLU parse time (the whole pipeline, one message at a time, in-process)",
        "",
        f"- {len(parse_ms)} messages: p50 {parse_ms[len(parse_ms) // 2]:.1f} ms, "
        f"p95 {parse_ms[int(len(parse_ms) * 0.95)]:.1f} ms, max {parse_ms[-1]:.1f} ms",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
