"""The app's periodic jobs (CX rollups, SLA alerts): a failed run is logged and the next one still happens."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from api.app import _start_periodic


def test_a_failing_run_is_logged_and_the_job_keeps_running(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    def job() -> str | None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("database went away")
        return f"run {len(runs)}" if len(runs) == 2 else None

    async def scenario() -> None:
        task = _start_periodic("test-job", 0.01, job)
        assert task is not None
        while len(runs) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO, logger="concierge"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert "test-job failed" in messages and "test-job: run 2" in messages
    assert not any(m.startswith("test-job: ") and m != "test-job: run 2" for m in messages)  # None logs nothing


def test_an_interval_of_zero_starts_nothing() -> None:
    async def scenario() -> None:
        assert _start_periodic("never", 0, lambda: "x") is None

    asyncio.run(scenario())
