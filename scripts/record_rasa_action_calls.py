"""Record the action-server requests a real Rasa sends, for the action endpoint's unit tests.

Usage: .venv/bin/python scripts/record_rasa_action_calls.py   (writes tests/fixtures/rasa/*.json)
Starts Rasa with its action endpoint pointed at a recorder that answers with no events.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.rasa import process
from api.settings import REPO_ROOT, Settings

OUT = REPO_ROOT / "tests" / "fixtures" / "rasa"
UTTERANCES = {
    "action_request_handoff": "can a medical science liaison call me",
    "action_answer_question": "what is the recommended dose of cardiovex?",
    # "/intent" is parsed by Rasa itself: the recorded call is the one its fallback rule makes
    "action_concierge_fallback": "/nlu_fallback",
}
recorded: dict[str, dict[str, object]] = {}


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["domain"] = {"note": "domain omitted from the recording (large and unused by our actions)"}
        recorded.setdefault(body["next_action"], body)
        payload = json.dumps({"events": [], "responses": [{"text": "recorded"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    settings = Settings()
    model = process.ensure_model(settings)
    recorder = HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    port = 5099
    log = settings.var_dir / "log" / "rasa-record.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = process.start_rasa(settings, model, port=port, log_file=log,
                              action_url=f"http://127.0.0.1:{recorder.server_port}/rasa/webhook")
    try:
        process.wait_until_ready(f"http://127.0.0.1:{port}", settings.rasa_token, proc=proc)
        for i, text in enumerate(UTTERANCES.values()):
            r = httpx.post(f"http://127.0.0.1:{port}/webhooks/rest/webhook",
                           json={"sender": f"conv-{i}", "message": text, "metadata": {"message_id": 100 + i}},
                           timeout=60)
            print(text, "->", r.status_code, r.text[:300])
    finally:
        process.stop(proc)
        recorder.shutdown()
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for name, body in recorded.items():
        (OUT / f"{name}.json").write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        print("recorded", name)
    missing = set(UTTERANCES) - set(recorded)
    if missing:
        print("not triggered:", ", ".join(sorted(missing)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
