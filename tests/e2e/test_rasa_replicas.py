"""A form in progress survives the Rasa replica that started it dying.

Two real Rasa 3.6 replicas share Rasa's SQL tracker store (a scratch PostgreSQL database) and its
Redis lock store, as ``concierge run --rasa-replicas 2`` and docker-compose start them; an api spreads
turns over both (CONCIERGE_RASA_URLS). The HCP starts a samples request, the replica holding the
conversation is killed with SIGKILL, and the HCP carries on: the other replica continues the same
form with the slots already given, and the request is recorded with all of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.app import create_app
from api.conversations import service as conversations
from api.rasa import process
from api.requests.models import ServiceRequest
from api.scratch_db import create_database, drop_database
from api.settings import Settings
from tests.conftest import LiveServer, free_port, redis_available

REDIS = "redis://127.0.0.1:6379/8"
PG = os.environ.get("CONCIERGE_TEST_DATABASE_URL", "")

pytestmark = [
    pytest.mark.rasa,
    pytest.mark.postgres,
    pytest.mark.skipif(not (PG.startswith("postgresql") and redis_available(REDIS)),
                       reason="Rasa's SQL tracker store needs CONCIERGE_TEST_DATABASE_URL on PostgreSQL, "
                              f"its lock store Redis at {REDIS}"),
]


class Replicas:
    def __init__(self, api_url: str, urls: list[str], procs: list[subprocess.Popen[bytes]], token: str) -> None:
        self.api_url = api_url
        self.urls = urls
        self.procs = procs
        self.token = token


@pytest.fixture(scope="module")
def replicas(engine: Engine, database_url: str, model_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Two Rasa replicas on one scratch tracker database + Redis, and an api spreading turns over them."""
    tracker_url = create_database(PG, "rasa_tracker")
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    api_port = free_port()
    var = tmp_path_factory.mktemp("replicas-var")
    # As tests/conftest.py's live_stack, with Rasa spread over the two replicas.
    api_settings = Settings(database_url=database_url, var_dir=var, port=api_port, model_dir=model_dir,
                            rasa_urls=",".join(urls), rasa_timeout=8.0, whatsapp_worker="process")
    rasa_settings = api_settings.model_copy(update={
        "database_url": tracker_url, "redis_url": REDIS, "rasa_tracker_db": tracker_url.rsplit("/", 1)[1],
    })
    model = process.ensure_model(rasa_settings)
    api = LiveServer(create_app(api_settings, engine=engine), api_port).start()
    logs = [var / f"rasa-replica-{i}.log" for i in (1, 2)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port, log in zip(ports, logs, strict=True):
            proc = process.start_rasa(rasa_settings, model, port=port, action_url=f"{api.url}/rasa/webhook",
                                      log_file=log, shared_stores=True)
            procs.append(proc)
            if len(procs) == 1:  # the first creates the tracker tables; the second starts after that
                assert process.wait_for_tracker_tables(rasa_settings, proc=proc), "no tracker tables"
        for url, proc in zip(urls, procs, strict=True):
            process.wait_until_ready(url, rasa_settings.rasa_token, proc=proc, timeout=600)
            # A first turn builds Rasa's lazy parts: not inside the test's turn deadline.
            httpx.post(f"{url}/webhooks/rest/webhook", json={"sender": f"warm-up-{uuid.uuid4().hex}",
                                                             "message": "hello"}, timeout=180)
    except BaseException:
        for proc in procs:
            process.stop(proc)
        api.stop()
        drop_database(tracker_url)
        raise RuntimeError("a Rasa replica did not start; logs:\n" + "\n".join(
            log.read_text()[-2000:] for log in logs if log.exists())) from None
    yield Replicas(api.url, urls, procs, rasa_settings.rasa_token)
    for proc in procs:
        process.stop(proc)
    api.stop()
    drop_database(tracker_url)


def _texts(messages: list[dict[str, Any]]) -> str:
    return " || ".join(str(m["text"]) for m in messages)


@pytest.mark.timeout(900)  # two Rasa servers load their model: minutes on a busy 2-core machine
def test_a_samples_form_goes_on_after_its_replica_is_killed(replicas: Replicas, engine: Engine) -> None:
    from api.rasa.client import RasaClient

    chat = httpx.Client(base_url=replicas.api_url, timeout=60)
    token = chat.post("/api/webchat/sessions").json()["session_id"]

    def say(text: str, payload: str | None = None) -> str:
        body: dict[str, Any] = {"text": text} | ({"payload": payload} if payload else {})
        r = chat.post(f"/api/webchat/sessions/{token}/messages", json=body)
        assert r.status_code == 200, r.text
        messages = r.json()["messages"]
        deadline = time.monotonic() + 60
        while not messages and time.monotonic() < deadline:  # pending on a busy machine: the replies follow
            time.sleep(0.5)
            listed = chat.get(f"/api/webchat/sessions/{token}/messages").json()["messages"]
            last_in = max(m["id"] for m in listed if m["direction"] == "in")
            messages = [m for m in listed if m["direction"] == "out" and m["id"] > last_in]
        return _texts(messages)

    assert "How many sample packs" in say("Could I get some Glucorel samples for the practice?")
    assert "Where should we deliver" in say("five packs")
    with Session(engine) as s:
        conversation_id = conversations.get_by_session_token(s, token).id

    # The replica this conversation's turns went to (both were up: the sender's first choice).
    first = RasaClient(replicas.urls, "", 1.0).order(conversation_id)[0].url
    victim = replicas.procs[replicas.urls.index(first)]
    other = replicas.urls[1 - replicas.urls.index(first)]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)

    # The surviving replica has the form where the dead one left it: read from the shared store.
    tracker = httpx.get(f"{other}/conversations/{conversation_id}/tracker",
                        params={"token": replicas.token}, timeout=30).json()
    assert tracker["active_loop"]["name"] == "samples_form"
    assert tracker["slots"]["product"] == "glucorel" and tracker["slots"]["sample_quantity"] == 5

    summary = say("Oakwood Surgery, 4 Mill Lane, Leeds LS1 4AB")
    assert "Please check your sample request" in summary, summary
    assert "Glucorel" in summary and "5 packs" in summary and "4 Mill Lane" in summary
    done = say("Confirm", payload="/affirm")
    assert "sample request is recorded (reference SR-" in done, done
    with Session(engine) as s:
        conv = conversations.get_by_session_token(s, token)
        row = s.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conv.id)).scalar_one()
        assert row.kind == "samples" and row.product == "glucorel" and row.reference in done
        assert row.details["sample_quantity"] == 5
        assert row.details["delivery_address"] == "Oakwood Surgery, 4 Mill Lane, Leeds LS1 4AB"
