"""The HCP side: the web chat event stream is authenticated like the messages endpoint and leaks nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
from sqlalchemy import Engine, text

from tests.relay.conftest import Api, Chat, SseReader, hcp_events_url, hcp_says

SseFactory = Callable[..., SseReader]


def test_the_hcp_stream_carries_their_own_conversation_as_the_messages_endpoint_lists_it(
        start_api: Callable[..., Api], chat: Callable[..., Chat], sse: SseFactory) -> None:
    api = start_api()
    c = chat(handoff=False)  # with the bot: Rasa's (fake) replies come back on the stream too
    stream = sse(hcp_events_url(api, c.token))
    assert stream.wait_status() == 200
    hcp_says(api, c, "hello there")
    stream.wait_for(lambda e: e.event == "message" and "echo: hello there" in e.data)
    listed = httpx.get(f"{api.url}/api/webchat/sessions/{c.token}/messages", timeout=10).json()["messages"]
    streamed = stream.messages()
    assert [(m["id"], m["body"], m["direction"], m["sender_type"]) for m in streamed] == \
        [(m["id"], m["text"], m["direction"], m["sender"]) for m in listed]
    assert streamed[1]["buttons"] == [{"title": "Talk to a person", "payload": "/request_human"}]
    assert not any(m["withheld"] for m in streamed)


def test_a_wrong_session_id_gets_404_and_nothing_of_anyone_elses_conversation(
        start_api: Callable[..., Api], chat: Callable[..., Chat], sse: SseFactory) -> None:
    api = start_api()
    mine, theirs = chat(handoff=False), chat(handoff=False)
    secret = f"private {uuid.uuid4().hex}"
    hcp_says(api, theirs, secret)
    for token in ("not-a-session", mine.token[:-1] + ("A" if mine.token[-1] != "A" else "B"), theirs.conversation_id):
        res = httpx.get(hcp_events_url(api, token), headers={"accept": "text/event-stream"}, timeout=10)
        assert res.status_code == 404, token
        assert res.headers["content-type"].startswith("application/json")
        assert secret not in res.text
    stream = sse(hcp_events_url(api, mine.token))
    hcp_says(api, mine, "mine only")
    stream.wait_for(lambda e: e.event == "message" and "echo: mine only" in e.data)
    assert secret not in stream.raw.decode()
    bad_after = httpx.get(hcp_events_url(api, mine.token).replace("after=0", "after=-1"), timeout=10)
    assert bad_after.status_code == 422


def test_the_hcp_stream_resumes_after_last_event_id_without_duplicates(
        start_api: Callable[..., Api], chat: Callable[..., Chat], sse: SseFactory) -> None:
    api = start_api()
    c = chat(handoff=False)
    first = sse(hcp_events_url(api, c.token))
    hcp_says(api, c, "alpha")
    first.wait_for(lambda e: e.event == "message" and "echo: alpha" in e.data)
    last_id = first.events[-1].id
    assert last_id is not None
    first.close()
    hcp_says(api, c, "beta")
    again = sse(hcp_events_url(api, c.token), headers={"Last-Event-ID": last_id})
    again.wait_for(lambda e: e.event == "message" and "echo: beta" in e.data)
    time.sleep(0.3)
    assert [m["body"] for m in again.messages()] == ["beta", "echo: beta"]


def test_the_stream_sends_heartbeats_and_a_retry_hint(
        start_api: Callable[..., Api], chat: Callable[..., Chat], sse: SseFactory) -> None:
    api = start_api(heartbeat=0.3)
    c = chat(handoff=False)
    stream = sse(hcp_events_url(api, c.token))
    assert stream.wait_status() == 200
    time.sleep(1.2)
    assert stream.raw.decode().startswith("retry: 1000\n\n")
    assert stream.comments >= 2


def test_streams_read_while_a_writer_holds_the_database(
        start_api: Callable[..., Api], chat: Callable[..., Chat], sse: SseFactory, engine: Engine) -> None:
    """On SQLite the app's transactions take the write lock up front; the streams' reads must not
    queue behind a writer (they use read-only connections on a WAL snapshot)."""
    api = start_api()
    c = chat(handoff=False)
    hcp_says(api, c, "before the lock")
    with engine.connect() as writer:
        writer.begin()
        writer.execute(text("UPDATE conversation SET failed_turns = failed_turns WHERE id = :id"),
                       {"id": c.conversation_id})  # a write transaction left open
        started = time.monotonic()
        stream = sse(hcp_events_url(api, c.token))
        stream.wait_for(lambda e: e.event == "message" and "echo: before the lock" in e.data, timeout=10)
        assert time.monotonic() - started < 2.0
        writer.rollback()
