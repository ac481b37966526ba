"""End to end through the real Rasa 3.6 server and the real api, over loopback HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import LiveStack

pytestmark = pytest.mark.rasa


def _session(stack: LiveStack) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=stack.api_url, timeout=30)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    return client, sid


def test_greeting_gets_the_bots_greeting(live_stack: LiveStack) -> None:
    client, sid = _session(live_stack)
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "hello"})
    assert r.status_code == 200
    texts = [m["text"] for m in r.json()["messages"]]
    assert any(t.startswith("Hello! I'm the HCP Concierge") for t in texts), texts


def test_asking_for_a_human_queues_a_handoff_and_acknowledges_it(live_stack: LiveStack) -> None:
    client, sid = _session(live_stack)
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "I want to talk to a human"})
    texts = [m["text"] for m in r.json()["messages"]]
    assert any("reference H-" in t for t in texts), texts
    # while it waits for a person the bot still answers (the message is relayed too), and the page
    # is told the request stands
    r2 = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "hello?"})
    assert r2.json()["messages"], "a message while waiting gets an answer, never silence"
    assert r2.json()["waiting"]["status"] == "queued" and r2.json()["waiting"]["reference"].startswith("H-")


def test_an_msl_request_targets_an_msl(live_stack: LiveStack) -> None:
    client, sid = _session(live_stack)
    r = client.post(f"/api/webchat/sessions/{sid}/messages",
                    json={"text": "can a medical science liaison call me"})
    texts = " ".join(m["text"] for m in r.json()["messages"])
    assert "medical science liaison" in texts and "reference H-" in texts


def test_out_of_scope_gets_a_polite_refusal_not_an_answer(live_stack: LiveStack) -> None:
    client, sid = _session(live_stack)
    r = client.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "book me a flight to paris"})
    (reply,) = r.json()["messages"]
    assert "outside what I can help with" in reply["text"]
    assert reply["approval_code"] is None


def test_two_concurrent_messages_come_back_in_order(live_stack: LiveStack) -> None:
    client, sid = _session(live_stack)
    url = f"/api/webchat/sessions/{sid}/messages"
    with ThreadPoolExecutor(max_workers=2) as pool:
        a, b = pool.map(lambda t: client.post(url, json={"text": t}), ["hello", "thanks"])
    assert a.status_code == b.status_code == 200
    history = client.get(url).json()["messages"]
    inbound = [m for m in history if m["direction"] == "in"]
    outbound = [m for m in history if m["direction"] == "out"]
    assert len(inbound) == 2 and len(outbound) == 2
    # each reply answers the message persisted before it, in that order
    first_in = inbound[0]["text"]
    expected = ["Hello! I'm the HCP Concierge", "You're welcome"]
    if first_in == "thanks":
        expected.reverse()
    assert [o["text"][: len(e)] for o, e in zip(outbound, expected, strict=True)] == expected
    assert outbound[0]["id"] < outbound[1]["id"]
