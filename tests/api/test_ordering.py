"""One conversation's messages are processed in order, never two at once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from tests.fakes.rasa import FakeRasa


def test_concurrent_messages_to_one_session_are_processed_serially_in_order(
    make_client: Callable[..., TestClient],
) -> None:
    rasa = FakeRasa(delay=0.02)
    client = make_client(rasa)
    sid = client.post("/api/webchat/sessions").json()["session_id"]
    url = f"/api/webchat/sessions/{sid}/messages"
    texts = [f"m{i}" for i in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda t: client.post(url, json={"text": t}), texts))
    assert all(r.status_code == 200 for r in results)
    for text, r in zip(texts, results, strict=True):
        assert [m["text"] for m in r.json()["messages"]] == [f"echo: {text}"]
    assert rasa.overlaps == 0
    history = client.get(url).json()["messages"]
    # The order Rasa saw is the order messages were persisted, and replies follow that order.
    inbound_order = [m["text"] for m in history if m["direction"] == "in"]
    assert sorted(inbound_order) == sorted(texts)
    assert [c["message"] for c in rasa.calls] == inbound_order
    assert [m["text"] for m in history if m["direction"] == "out"] == [f"echo: {t}" for t in inbound_order]


def test_different_conversations_proceed_concurrently(make_client: Callable[..., TestClient]) -> None:
    import time

    rasa = FakeRasa(delay=0.3)
    client = make_client(rasa)
    sids = [client.post("/api/webchat/sessions").json()["session_id"] for _ in range(6)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda s: client.post(f"/api/webchat/sessions/{s}/messages", json={"text": "hi"}), sids))
    assert time.monotonic() - started < 6 * 0.3
