"""``concierge run --api-processes N --rasa-replicas M`` (api/launcher.py).

What is asked for is checked before anything starts: a refusal exits 2 with the reason and leaves no
file, process or database change behind. The smoke test starts the real command (two api processes
behind the front, the worker, the WhatsApp sandbox, no Rasa) on PostgreSQL + Redis, has a message
answered on both channels, kills one api process, and stops it all with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.launcher import LaunchError, plan
from api.settings import Settings
from tests.conftest import REPO, free_port, redis_available

PG = "postgresql+psycopg://u@db.example:5432/concierge"
REDIS = "redis://127.0.0.1:6379/8"


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONCIERGE_")}
    full.update({"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "CONCIERGE_VAR_DIR": str(tmp_path / "var"), **env})
    return subprocess.run([sys.executable, "-m", "api.cli", "run", *args], cwd=REPO, env=full, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("args", "env", "complaint"), [
    (("--api-processes", "0"), {}, "must be at least 1, not 0"),
    (("--rasa-replicas", "-1"), {}, "must be at least 0, not -1"),
    (("--api-processes", "two"), {}, "not a whole number"),
    (("--api-processes", "2"), {}, "set CONCIERGE_DATABASE_URL to PostgreSQL"),
    (("--rasa-replicas", "2"), {"CONCIERGE_REDIS_URL": REDIS}, "set CONCIERGE_DATABASE_URL to PostgreSQL"),
    (("--api-processes", "3"), {"CONCIERGE_DATABASE_URL": PG}, "set CONCIERGE_REDIS_URL"),
    (("--workers", "0"), {}, "must be at least 1, not 0"),
    (("--workers", "many"), {}, "not a whole number"),
    (("--workers", "2"), {"CONCIERGE_REDIS_URL": REDIS}, "set CONCIERGE_DATABASE_URL to PostgreSQL"),
    (("--workers", "2"), {"CONCIERGE_DATABASE_URL": PG}, "set CONCIERGE_REDIS_URL"),
    (("--no-rasa", "--rasa-replicas", "2"), {}, "contradict"),
    ((), {"CONCIERGE_RASA_URLS": "http://127.0.0.1:5005,,http://127.0.0.1:5006"},
     "CONCIERGE_RASA_URLS: rasa_urls: entry 2 is blank"),
    (("--api-processes", "2"), {"CONCIERGE_RASA_URLS": "ftp://127.0.0.1:5005"}, "is not an http(s) base URL"),
    (("--api-processes", "2", "--api-port-base", "5004"),
     {"CONCIERGE_DATABASE_URL": PG, "CONCIERGE_REDIS_URL": REDIS}, "would both use port 5005"),
])
def test_a_run_that_cannot_work_is_refused_before_anything_starts(
        tmp_path: Path, args: tuple[str, ...], env: dict[str, str], complaint: str) -> None:
    result = run_cli(tmp_path, *args, **env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert complaint in result.stderr
    assert not (tmp_path / "var").exists(), "nothing may be created before the checks pass"


def _settings(**kw: object) -> Settings:
    base: dict[str, object] = {"database_url": PG, "redis_url": REDIS, "port": 8000,
                               "rasa_url": "http://127.0.0.1:5005"}
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def test_the_plan_puts_api_processes_and_replicas_on_consecutive_ports() -> None:
    p = plan(_settings(), api_processes=3, rasa_replicas=2)
    assert p.api_ports == (8010, 8011, 8012) and p.rasa_ports == (5005, 5006)
    assert p.rasa_urls == ["http://127.0.0.1:5005", "http://127.0.0.1:5006"]
    assert plan(_settings(), api_processes=2, rasa_replicas=0).rasa_ports == ()


@pytest.mark.parametrize(("kw", "args", "complaint"), [
    ({"port": 5006}, {"api_processes": 2, "rasa_replicas": 2},
     "and the public port (CONCIERGE_PORT) would both use port 5006"),
    ({}, {"api_processes": 2, "rasa_replicas": 1, "api_port_base": 7999}, "would both use port 8000"),
    ({"whatsapp_sandbox_port": 8011}, {"api_processes": 2, "rasa_replicas": 1, "sandbox": True}, "port 8011"),
    ({"port": 65530}, {"api_processes": 8, "rasa_replicas": 1}, "outside 1-65535"),
    ({"database_url": "postgresql+psycopg://u@h/c", "redis_url": "rediss://h:6379/0"},
     {"api_processes": 1, "rasa_replicas": 2}, "CONCIERGE_REDIS_URL must be redis://"),
    ({"redis_url": "redis://h:6379/cache"}, {"api_processes": 1, "rasa_replicas": 2}, "must be a number"),
])
def test_clashing_ports_and_unusable_stores_are_named(kw: dict[str, object], args: dict[str, object],
                                                       complaint: str) -> None:
    with pytest.raises(LaunchError) as err:
        plan(_settings(**kw), **args)  # type: ignore[arg-type]
    assert complaint in str(err.value)


def test_one_api_process_and_one_rasa_need_neither_postgresql_nor_redis() -> None:
    p = plan(Settings(database_url="sqlite:///x.db", redis_url=""), api_processes=1, rasa_replicas=1)
    assert p.api_processes == 1 and p.rasa_ports == (5005,) and p.workers == 1


def test_several_workers_are_planned_and_supervised_each_with_its_own_log_and_pid_file(tmp_path: Path) -> None:
    from api.launcher import supervisors

    with pytest.raises(LaunchError, match="--workers must be at least 1, not 0"):
        plan(_settings(), api_processes=1, rasa_replicas=0, workers=0)
    with pytest.raises(LaunchError, match="--workers 2: the processes share one database"):
        plan(_settings(database_url="sqlite:///x.db"), api_processes=1, rasa_replicas=1, workers=2)
    p = plan(_settings(var_dir=tmp_path), api_processes=3, rasa_replicas=0, workers=2)
    assert p.workers == 2 and p.api_ports == (8010, 8011, 8012)
    sups = supervisors(_settings(var_dir=tmp_path), p, None)
    workers = [s for s in sups if s.mark == "api.cli worker"]
    assert [s.name for s in workers] == ["WhatsApp worker 1", "WhatsApp worker 2"]
    assert [s.pidfile.name for s in workers] == ["worker-1.pid", "worker-2.pid"]
    assert len(sups) == 3 + 2
    # One worker keeps the plain names (scripts and docs read var/worker.pid and var/log/worker.log).
    one = supervisors(_settings(var_dir=tmp_path), plan(_settings(), api_processes=2, rasa_replicas=0), None)
    assert [(s.name, s.pidfile.name) for s in one if s.mark == "api.cli worker"] == [("WhatsApp worker", "worker.pid")]


def test_rasa_replicas_get_their_stores_from_the_database_and_redis_urls() -> None:
    from api.rasa.process import SHARED_ENDPOINTS, shared_store_env

    env = shared_store_env(_settings(database_url="postgresql+psycopg://bot:s3cret@pg.internal:6543/concierge",
                                     redis_url="redis://:pw@cache:6380/3", rasa_tracker_db="rasa_trackers"))
    assert env == {
        "RASA_TRACKER_DB_HOST": "pg.internal", "RASA_TRACKER_DB_PORT": "6543", "RASA_TRACKER_DB_NAME": "rasa_trackers",
        "RASA_TRACKER_LOGIN_DB": "concierge", "RASA_TRACKER_DB_USER": "bot", "RASA_TRACKER_DB_PASSWORD": "s3cret",
        "RASA_LOCK_REDIS_HOST": "cache", "RASA_LOCK_REDIS_PORT": "6380", "RASA_LOCK_REDIS_DB": "3",
        "RASA_LOCK_REDIS_PASSWORD": "pw",
    }
    import re

    read = set(re.findall(r"\$\{([A-Z0-9_]+)\}", SHARED_ENDPOINTS.read_text()))
    assert read - {"CONCIERGE_ACTION_URL", "CONCIERGE_ACTION_TOKEN"} == set(env), "the file reads what we set"


# -- the real command --------------------------------------------------------------------------------


def _wait(url: str, timeout: float = 120.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code == 200:
                return r
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout:.0f}s")
        time.sleep(0.3)


def _pid(path: Path) -> int:
    return int(path.read_text().split()[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.mark.postgres
@pytest.mark.skipif(not (os.environ.get("CONCIERGE_TEST_DATABASE_URL", "").startswith("postgresql")
                         and redis_available(REDIS)),
                    reason="needs CONCIERGE_TEST_DATABASE_URL on PostgreSQL and Redis at 127.0.0.1:6379")
def test_two_api_processes_behind_the_front_survive_one_being_killed(tmp_path: Path, database_url: str,
                                                                     model_dir: Path) -> None:
    port, base, phone_port = free_port(), free_port(), free_port()
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCIERGE_")}
    env.update({"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "CONCIERGE_VAR_DIR": str(var),
                "CONCIERGE_DATABASE_URL": database_url, "CONCIERGE_REDIS_URL": REDIS,
                "CONCIERGE_PORT": str(port), "CONCIERGE_RATE_LIMITS": "false", "CONCIERGE_SLA_SWEEP_INTERVAL_S": "0",
                "CONCIERGE_WHATSAPP_SANDBOX_PORT": str(phone_port), "CONCIERGE_MODEL_DIR": str(model_dir),
                "CONCIERGE_RASA_URL": f"http://127.0.0.1:{free_port()}",  # Rasa is away: the fallback answers
                "CONCIERGE_AUDIT_KEY": os.environ.get("CONCIERGE_AUDIT_KEY", "test-suite-audit-key")})
    out = tmp_path / "run.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "run", "--api-processes", "2", "--rasa-replicas",
                                 "0", "--api-port-base", str(base), "--no-demo-data", "--whatsapp-sandbox"],
                                cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        front = f"http://127.0.0.1:{port}"
        for p in (base, base + 1):
            _wait(f"http://127.0.0.1:{p}/healthz")
        _wait(f"{front}/healthz")
        printed = out.read_text()
        assert f"web chat      {front}/" in printed and f"http://127.0.0.1:{base + 1}" in printed
        pids = [_pid(var / "api-1.pid"), _pid(var / "api-2.pid"), _pid(var / "worker.pid")]
        assert all(_alive(p) for p in pids)

        # Each new connection to the front goes to the next api process: a web chat works through it.
        with httpx.Client(base_url=front, timeout=30) as c:
            sid = c.post("/api/webchat/sessions").json()["session_id"]
            assert c.get(f"/api/webchat/sessions/{sid}/messages").status_code == 200

        # WhatsApp: the simulated phone's webhook reaches an api process through the front, the worker
        # process answers (Rasa is away: the fallback) through the fake Twilio the sandbox serves.
        phone, number = f"http://127.0.0.1:{phone_port}", "whatsapp:+15550001234"
        assert httpx.post(f"{phone}/sandbox/api/messages", json={"from": number, "body": "hi"}, timeout=30).is_success
        deadline = time.monotonic() + 120
        answered: list[str] = []
        while not answered and time.monotonic() < deadline:
            time.sleep(0.5)
            events = httpx.get(f"{phone}/sandbox/api/messages", params={"number": number}, timeout=10).json()
            answered = [e["body"] for e in events["events"] if e["direction"] == "business"]
        assert answered, "no WhatsApp reply reached the phone"

        os.kill(pids[0], signal.SIGKILL)  # api process 1 dies: the front sends everyone to process 2
        for _ in range(6):
            assert httpx.get(f"{front}/healthz", timeout=10).status_code == 200
        _wait(f"http://127.0.0.1:{base}/healthz")  # ... and the supervisor starts process 1 again
        assert _pid(var / "api-1.pid") != pids[0]
        restarted = _pid(var / "api-1.pid")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, out.read_text()[-3000:]
    assert "Stopped 3 process(es)." in out.read_text()
    for pid in (restarted, pids[1], pids[2]):
        assert not _alive(pid), f"pid {pid} outlived `concierge run`"
