"""Periodic jobs shared by several api processes: one run at a time on PostgreSQL (api/jobs.py)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, text

from api.db import make_engine
from api.jobs import lock_key, one_at_a_time


def test_on_sqlite_the_job_simply_runs(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/jobs.db")
    runs: list[int] = []
    try:
        job = one_at_a_time(engine, "cx-rollups", lambda: runs.append(1) or "ran")
        assert job() == "ran" and job() == "ran" and runs == [1, 1]
    finally:
        engine.dispose()


def test_the_lock_key_is_stable_and_differs_per_job() -> None:
    assert lock_key("sla-alerts") == lock_key("sla-alerts")
    assert lock_key("sla-alerts") != lock_key("auto-assign")
    assert -(2 ** 63) <= lock_key("sla-alerts") < 2 ** 63


@pytest.mark.postgres
def test_a_second_process_skips_the_round_while_the_first_runs_it_then_runs_the_next(
        engine: Engine, database_url: str) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks: PostgreSQL only")
    other_process = make_engine(database_url)    # its own pool: another api process
    started, finish = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow() -> str:
        runs.append("first")
        started.set()
        assert finish.wait(10)
        return "first done"

    first = one_at_a_time(engine, "test-slow-job", slow)
    second = one_at_a_time(other_process, "test-slow-job", lambda: runs.append("second") or "second done")
    other_job = one_at_a_time(other_process, "test-another-job", lambda: "another done")
    result: list[str | None] = []
    try:
        runner = threading.Thread(target=lambda: result.append(first()))
        runner.start()
        assert started.wait(10)
        assert second() is None                  # skipped, not queued behind the first
        assert other_job() == "another done"      # another job's lock is another lock
        finish.set()
        runner.join(10)
        assert result == ["first done"]
        assert second() == "second done"          # the lock was given back
        assert runs == ["first", "second"]
    finally:
        finish.set()
        other_process.dispose()


@pytest.mark.postgres
def test_a_process_that_dies_mid_run_frees_the_job_at_once(engine: Engine, database_url: str) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks: PostgreSQL only")
    dying = make_engine(database_url)
    conn = dying.connect()
    assert conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key("test-dying-job")}).scalar()
    try:
        job = one_at_a_time(engine, "test-dying-job", lambda: "ran")
        assert job() is None                       # held by the (still living) other process
        conn.invalidate()                          # its connection is gone, as with a SIGKILL
        dying.dispose()
        # The server frees the lock when that backend ends — a moment after the socket closes (under load
        # more than a moment): no sweep or timeout of ours is involved.
        deadline = time.monotonic() + 10
        ran = job()
        while ran is None and time.monotonic() < deadline:
            time.sleep(0.05)
            ran = job()
        assert ran == "ran"
    finally:
        conn.close()
