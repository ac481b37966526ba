"""The api's CPU per web-chat turn with Rasa out of the picture: a steadier figure than a run beside Rasa.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/turn_cpu.py [--turns 300] [--database-url postgresql+psycopg://…]

The app runs in this process (Starlette's TestClient) with the real safety screen, the real database
and a Rasa stand-in that answers at once with a text and a button (no custom action calls). After a
warm-up, ``--turns`` turns go through ``POST /api/webchat/messages`` one after another (new session
every 10 turns); the figure is this process's CPU time (user + system) per turn — the client side of
the TestClient included, so compare runs of this script with each other, not with turn_profile.py.
Also prints SQL statements and commits per turn. Run several times and on both versions when
comparing: the machine's load moves the figure by ±10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.profiling import StatementCounter, load_average

SCRIPT = ["hello", "thanks", "are you a bot?", "what's the weather tomorrow", "ok", "good morning",
          "thank you very much", "tell me a joke", "hi there", "cheers"]


def rasa_stand_in(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/status":
        return httpx.Response(200, json={"model_id": "stand-in"})
    text = json.loads(request.content)["message"]
    return httpx.Response(200, json=[{"recipient_id": "x", "text": f"You said: {text}",
                                      "buttons": [{"title": "Talk to a person", "payload": "/request_human"}]}])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="measured rounds of --turns (median reported)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    for name in ("MESSAGES", "CLIENT_MESSAGES", "READS", "SESSIONS"):
        os.environ[f"CONCIERGE_RATE_{name}_PER_MIN"] = "1000000"

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.db import make_engine
    from api.migrate import upgrade
    from api.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/cpu.db"
        engine = make_engine(url)
        upgrade(engine)
        settings = Settings(database_url=url, var_dir=Path(tmp))
        counter = StatementCounter()
        counter.install()
        app = create_app(settings, engine=engine, rasa_transport=httpx.MockTransport(rasa_stand_in),
                         warm_knowledge=False)
        with TestClient(app) as client:
            state = app.state.concierge
            while not state.safety_ready():
                time.sleep(0.1)

            def turns(n: int) -> None:
                sid = ""
                for i in range(n):
                    if i % 10 == 0:
                        sid = client.post("/api/webchat/sessions").json()["session_id"]
                    r = client.post("/api/webchat/messages", json={"text": SCRIPT[i % len(SCRIPT)]},
                                    headers={"X-Chat-Session": sid})
                    r.raise_for_status()
                    assert r.json()["messages"], "a turn without replies"

            turns(30)  # warm-up
            rounds = []
            load = load_average()
            for _ in range(args.repeat):
                counter.reset()
                cpu0 = time.process_time()
                wall0 = time.perf_counter()
                turns(args.turns)
                rounds.append(((time.process_time() - cpu0) * 1000 / args.turns,
                               (time.perf_counter() - wall0) * 1000 / args.turns, dict(counter.kinds),
                               counter.head_held_s * 1000 / args.turns))
        engine.dispose()
    rounds.sort(key=lambda r: r[0])
    cpu, wall, kinds, held = rounds[len(rounds) // 2]
    stmts = {k: round(v / args.turns, 2) for k, v in sorted(kinds.items())}
    print(f"{args.turns} turns × {args.repeat} rounds, database {url.split(':')[0]}, load average {load} → "
          f"{load_average()}")
    print(f"api CPU per turn (median round): {cpu:.1f} ms (rounds: {', '.join(f'{r[0]:.1f}' for r in rounds)}); "
          f"wall {wall:.1f} ms/turn; audit head held {held:.1f} ms/turn")
    print("SQL per turn (sessions included, 1 per 10 turns): " + ", ".join(f"{k} {v}" for k, v in stmts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
