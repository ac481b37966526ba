"""Every entry point imports on its own, in a fresh interpreter.

Inside the test process modules are already imported in some order, which hides a circular import
that only bites a process starting from one particular module (``concierge serve`` importing the app,
the Rasa action server importing the actions): such a cycle once kept the api from starting while
every in-process test passed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ("api.app", "api.cli", "api.rasa.actions", "api.rasa.actions.answer_question", "api.hcps.intake",
                "api.pipeline.turn", "api.pipeline.worker", "api.safety.context", "api.safety.classifier",
                "api.conversations.gibberish", "knowledge.service", "feedback")


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_the_module_imports_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
