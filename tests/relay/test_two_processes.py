"""Two api processes on one database and one Redis: the relay crosses between them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from api.relay.bus import RedisBus
from tests.conftest import redis_available
from tests.relay.conftest import (
    REDIS_URL,
    Api,
    Chat,
    SseReader,
    StaffLogin,
    hcp_events_url,
    hcp_says,
    staff_events_url,
    staff_reply,
)

pytestmark = pytest.mark.skipif(not redis_available(REDIS_URL), reason=f"no Redis server answers at {REDIS_URL}")


def test_hcp_on_one_api_and_staff_on_another_talk_live_through_redis(
        start_api: Callable[..., Api], staff_login: Callable[..., StaffLogin], chat: Callable[..., Chat],
        sse: Callable[..., SseReader]) -> None:
    # A re-read every 30 s: only a hint through Redis can deliver within the assertions' limits.
    hcp_api = start_api(redis_url=REDIS_URL, poll_interval=30.0)
    staff_api = start_api(redis_url=REDIS_URL, poll_interval=30.0)
    rep = staff_login(staff_api, "rep")
    c = chat(claimed_by=rep.id)
    staff_stream = sse(staff_events_url(staff_api, c.conversation_id), cookies=rep.cookies)
    hcp_stream = sse(hcp_events_url(hcp_api, c.token))
    assert staff_stream.wait_status() == 200 and hcp_stream.wait_status() == 200
    staff_stream.wait_for(lambda e: e.event == "state")

    question = f"Do you have the new leaflet? {uuid.uuid4().hex[:6]}"
    sent = time.monotonic()
    hcp_says(hcp_api, c, question)
    got = staff_stream.wait_for(lambda e: e.event == "message" and question in e.data, timeout=5)
    assert got.at - sent < 2.0

    answer = f"Yes, sending it now. {uuid.uuid4().hex[:6]}"
    sent = time.monotonic()
    staff_reply(staff_api, rep, c, answer)
    got = hcp_stream.wait_for(lambda e: e.event == "message" and answer in e.data, timeout=5)
    assert got.at - sent < 2.0
    for api in (staff_api, hcp_api):
        assert isinstance(api.relay.bus, RedisBus) and api.relay.bus.received >= 1
