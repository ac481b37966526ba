"""The Rasa project itself: the data validates cleanly and every test story passes."""

from __future__ import annotations

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
