"""Rasa's own log never carries what an HCP wrote, even when a turn times out inside Rasa.

A real Rasa 3.6 server, started the way the product starts it, calls an action endpoint that
never answers; Rasa's response deadline cancels the turn and logs the event. Rasa alone would
write the message text into that line.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from api.rasa import process
from api.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.rasa


def test_a_turn_timing_out_inside_rasa_leaves_no_message_text_in_its_log(
        hanging_server: str, tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(var_dir=tmp_path / "var", rasa_url=f"http://127.0.0.1:{port}", rasa_timeout=1.0)
    assert process.response_timeout(settings) == 10  # never below 10 s
    model = process.ensure_model(settings)
    log_file = tmp_path / "rasa.log"
    proc = process.start_rasa(settings, model, port=port, action_url=f"{hanging_server}/rasa/webhook",
                              log_file=log_file)
    canary = f"canary-{uuid.uuid4().hex[:8]}"
    try:
        process.wait_until_ready(settings.rasa_url, settings.rasa_token, proc=proc, timeout=240)
        # A product question: Rasa runs the answering action, which never returns.
        with httpx.Client(timeout=30) as client:
            client.post(f"{settings.rasa_url}/webhooks/rest/webhook",
                        json={"sender": "log-probe", "message": f"what is the usual dose of cardiovex {canary}"})
        deadline = time.monotonic() + 10
        while "rest.message.received.timeout" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        process.stop(proc)
    log = log_file.read_text()
    assert "rest.message.received.timeout" in log   # the event Rasa would have printed the text in
    assert canary not in log
