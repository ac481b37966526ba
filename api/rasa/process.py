"""Training and running the Rasa server (a separate Python 3.10 virtualenv).

The trained model is cached by a hash of what it is trained from (``bot/domain``,
``bot/data``, the custom NLU components in ``bot/components``, ``config.yml``): unchanged
sources never retrain, on any clone of this machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from api.rasa.supervisor import die_with_parent
from api.settings import REPO_ROOT, Settings

TRAINING_SOURCES = ("bot/domain", "bot/data", "bot/components", "config.yml")
# Rasa imports the custom NLU components (config.yml: ``concierge_nlu.…``) from here.
COMPONENTS_DIR = REPO_ROOT / "bot" / "components"
# How Rasa is started (``concierge_rasa_run``: no message text in its logs); not part of the model.
RUNTIME_DIR = REPO_ROOT / "bot" / "runtime"
# Replicas: Rasa's SQL tracker store (PostgreSQL) and Redis lock store, every value from the environment
# (``shared_store_env``). docker-compose's Rasa services read the same file.
SHARED_ENDPOINTS = REPO_ROOT / "docker" / "rasa" / "endpoints.yml"


def model_hash(root: Path = REPO_ROOT) -> str:
    h = hashlib.sha256()
    for rel in TRAINING_SOURCES:
        path = root / rel
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                           and p.suffix != ".pyc")
        else:
            files = [path] if path.exists() else []
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]


def shared_store_env(settings: Settings) -> dict[str, str]:
    """What ``SHARED_ENDPOINTS`` reads: the tracker store on CONCIERGE_DATABASE_URL's PostgreSQL server
    (database CONCIERGE_RASA_TRACKER_DB, created by Rasa through the api's own database), the lock
    store on CONCIERGE_REDIS_URL. Raises ``ValueError`` when they are not PostgreSQL and Redis."""
    from urllib.parse import urlsplit

    from sqlalchemy.engine import make_url

    db = make_url(settings.database_url)
    if db.get_backend_name() != "postgresql" or not db.database:
        raise ValueError("Rasa replicas share a SQL tracker store on PostgreSQL: CONCIERGE_DATABASE_URL must be "
                         "postgresql+psycopg://user:password@host:5432/database")
    redis = urlsplit(settings.redis_url)
    if redis.scheme != "redis" or not redis.hostname:
        raise ValueError("Rasa replicas share a Redis lock store: CONCIERGE_REDIS_URL must be "
                         "redis://[:password@]host:6379/db")
    redis_db = redis.path.strip("/") or "0"
    if not redis_db.isdigit():
        raise ValueError(f"CONCIERGE_REDIS_URL: the database number must be a number, not {redis_db!r}")
    return {
        "RASA_TRACKER_DB_HOST": db.host or "127.0.0.1",
        "RASA_TRACKER_DB_PORT": str(db.port or 5432),
        "RASA_TRACKER_DB_NAME": settings.rasa_tracker_db,
        "RASA_TRACKER_LOGIN_DB": db.database,
        "RASA_TRACKER_DB_USER": db.username or "",
        "RASA_TRACKER_DB_PASSWORD": db.password or "",
        "RASA_LOCK_REDIS_HOST": redis.hostname,
        "RASA_LOCK_REDIS_PORT": str(redis.port or 6379),
        "RASA_LOCK_REDIS_DB": redis_db,
        "RASA_LOCK_REDIS_PASSWORD": redis.password or "",
    }


def wait_for_tracker_tables(settings: Settings, *, timeout: float = 180.0,
                            proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Wait until the first replica has created the SQL tracker store's tables (it does so before loading
    its model), so replicas started after it do not race to create them. False on timeout."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    env = shared_store_env(settings)
    url = make_url(settings.database_url).set(database=env["RASA_TRACKER_DB_NAME"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                if inspect(conn).has_table("events"):
                    return True
        except Exception:
            pass
        finally:
            engine.dispose()
        time.sleep(0.5)
    return False


RASA_THREAD_VARS = ("TF_INTRA_OP_PARALLELISM_THREADS", "TF_INTER_OP_PARALLELISM_THREADS", "OMP_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def rasa_env(settings: Settings, action_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "RASA_TELEMETRY_ENABLED": "false",
        # A replica killed mid-turn leaves that conversation's ticket in the Redis lock store: it lapses
        # after this (Rasa's default is 60 s), no sooner than Rasa's own deadline for a turn.
        "TICKET_LOCK_LIFETIME": str(response_timeout(settings)),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
        "CONCIERGE_ACTION_URL": action_url or f"http://127.0.0.1:{settings.port}/rasa/webhook",
        "CONCIERGE_ACTION_TOKEN": settings.action_token,
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": os.pathsep.join(p for p in (str(COMPONENTS_DIR), str(RUNTIME_DIR), env.get("PYTHONPATH", ""))
                                      if p),
    })
    if settings.rasa_threads:
        # Read by Rasa's own TensorFlow set-up (rasa/utils/tensorflow/environment.py) and by the BLAS
        # libraries under numpy; an operator's own value wins.
        for name in RASA_THREAD_VARS:
            env.setdefault(name, str(settings.rasa_threads))
    return env


def rasa_bin(settings: Settings) -> Path:
    return settings.rasa_venv / "bin" / "rasa"


def ensure_model(settings: Settings, *, root: Path = REPO_ROOT, quiet: bool = False) -> Path:
    """Path to the trained model for the current sources, training only if none is cached."""
    digest = model_hash(root)
    cache = settings.rasa_model_cache
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"{digest}.tar.gz"
    local_dir = settings.var_dir / "models"
    local_dir.mkdir(parents=True, exist_ok=True)
    local = local_dir / f"{digest}.tar.gz"
    if local.exists():
        return local
    if not cached.exists():
        out = sys.stderr if not quiet else subprocess.DEVNULL
        print(f"training Rasa model {digest} (bot/ or config.yml changed) ...", file=sys.stderr)
        started = time.perf_counter()
        tmp_out = local_dir / f"tmp-{digest}"
        subprocess.run(
            [str(rasa_bin(settings)), "train", "--config", str(root / "config.yml"),
             "--domain", str(root / "bot" / "domain"), "--data", str(root / "bot" / "data"),
             "--out", str(tmp_out), "--fixed-model-name", digest],
            check=True, cwd=root, env=rasa_env(settings), stdout=out, stderr=out,
        )
        produced = tmp_out / f"{digest}.tar.gz"
        shutil.move(str(produced), str(cached.with_suffix(".partial")))
        os.replace(cached.with_suffix(".partial"), cached)
        shutil.rmtree(tmp_out, ignore_errors=True)
        print(f"trained in {time.perf_counter() - started:.0f}s -> {cached}", file=sys.stderr)
    shutil.copyfile(cached, local)
    return local


def response_timeout(settings: Settings) -> int:
    """Rasa's own deadline for a turn (its default is an hour): a turn our api gave up on long ago
    (say, an action call that hangs) must not hold the conversation's lock in Rasa for that long."""
    return max(10, round(settings.rasa_timeout * 3))


def start_rasa(settings: Settings, model: Path, *, port: int, action_url: str,
               log_file: Path | None = None, root: Path = REPO_ROOT,
               shared_stores: bool = False) -> subprocess.Popen[bytes]:
    """Rasa's server: REST channel + HTTP API (token), bound to loopback. ``shared_stores``: one replica of
    several, with its trackers in PostgreSQL and its locks in Redis (``SHARED_ENDPOINTS``)."""
    log = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    env = rasa_env(settings, action_url)
    endpoints = root / "bot" / "endpoints.yml"
    if shared_stores:
        env.update(shared_store_env(settings))
        endpoints = root / SHARED_ENDPOINTS.relative_to(REPO_ROOT)
    return subprocess.Popen(
        [str(settings.rasa_venv / "bin" / "python"), "-m", "concierge_rasa_run", "run", "--enable-api",
         "--auth-token", settings.rasa_token, "--response-timeout", str(response_timeout(settings)),
         "-i", "127.0.0.1", "-p", str(port), "--model", str(model),
         "--endpoints", str(endpoints),
         "--credentials", str(root / "bot" / "credentials.yml")],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
        # its own process group (stopped as a whole), and it dies with the process that started it
        start_new_session=True, preexec_fn=die_with_parent,
    )


def wait_until_ready(url: str, token: str, *, timeout: float = 420.0,
                     proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until Rasa reports a loaded model (or fail with a clear error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Rasa exited with code {proc.returncode} while starting")
        try:
            r = httpx.get(f"{url}/status", params={"token": token}, timeout=2.0)
            if r.status_code == 200 and (r.json().get("model_id") or r.json().get("model_file")):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Rasa at {url} not ready after {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes], *, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
