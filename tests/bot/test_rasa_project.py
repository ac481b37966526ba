"""The Rasa project itself: the data validates cleanly and every test story passes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from api.rasa import process
from api.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.rasa


def _rasa(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = process.rasa_env(settings)
    env["PYTHONWARNINGS"] = "default"  # the validator reports problems as Python warnings
    return subprocess.run([str(process.rasa_bin(settings)), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_rasa_data_validates_without_warnings(settings: Settings) -> None:
    r = _rasa(settings, "data", "validate", "--domain", "bot/domain", "--data", "bot/data",
              "--config", "config.yml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    output = r.stdout + r.stderr
    problems = [line for line in output.splitlines() if "UserWarning" in line or "is not used" in line]
    assert problems == []
    assert "No story structure conflicts found" in output


def test_every_dialogue_test_story_passes(settings: Settings, tmp_path: Path) -> None:
    model = process.ensure_model(settings)
    r = _rasa(settings, "test", "core", "--stories", "bot/tests/test_stories.yml", "--model", str(model),
              "--out", str(tmp_path), "--fail-on-prediction-errors")
    failed = tmp_path / "failed_test_stories.yml"
    detail = failed.read_text()[-4000:] if failed.exists() else r.stdout[-3000:] + r.stderr[-3000:]
    assert r.returncode == 0, detail


FEATURIZER_CHECK = r"""
import json, sys
import numpy as np
from rasa.shared.nlu.training_data.message import Message
from concierge_nlu.featurizer import MiniLMSentenceFeaturizer
out = {}
f = MiniLMSentenceFeaturizer({**MiniLMSentenceFeaturizer.get_default_config(), "scale": 3.0}, "minilm")
m, empty = Message(data={"text": "could I get some samples"}), Message(data={"text": "  "})
f.process([m, empty])
seq, sent = m.get_dense_features("text")
out["sequence"] = seq is not None
out["shape"] = list(sent.features.shape)
out["norm"] = float(np.linalg.norm(sent.features))
blank = empty.get_dense_features("text")[1]
out["blank"] = [list(blank.features.shape), float(abs(blank.features).sum())] if blank is not None else None
for bad in (0, -1, "big"):
    try:
        MiniLMSentenceFeaturizer({**MiniLMSentenceFeaturizer.get_default_config(), "scale": bad}, "minilm")
        out[f"scale {bad!r}"] = "accepted"
    except ValueError as exc:
        out[f"scale {bad!r}"] = str(exc)
print(json.dumps(out))
"""


def test_minilm_featurizer_adds_one_scaled_sentence_vector_in_rasa(settings: Settings) -> None:
    # Runs in Rasa's own virtualenv, importing the component the way `rasa train` does (PYTHONPATH).
    r = subprocess.run([str(settings.rasa_venv / "bin" / "python"), "-c", FEATURIZER_CHECK], cwd=REPO,
                       env=process.rasa_env(settings), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["sequence"] is False  # a sentence feature only: nothing for DIET/CRF to misalign
    assert out["shape"] == [1, 384]
    assert abs(out["norm"] - 3.0) < 1e-4  # unit vector × scale
    assert out["blank"] == [[1, 384], 0.0]  # zeros: every message has the same feature width
    for bad in ("0", "-1", "'big'"):
        assert out[f"scale {bad}"] == f"MiniLMSentenceFeaturizer: scale must be a positive number, not {bad}"
