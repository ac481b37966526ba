"""Shared fixtures: settings, a migrated database, and one rolled-back transaction per test.

The suite runs on a SQLite file by default and on PostgreSQL when
``CONCIERGE_TEST_DATABASE_URL`` is set (CI sets it to the local server).
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per process, set before numpy or torch is imported (they read it once, at
# load). The suite runs torch (MiniLM, TorchScript), numpy's OpenBLAS (the numpy MiniLM encoder, faiss,
# clustering) and server threads in one process, beside Rasa and CLI subprocesses, on a 2-core box:
# pools of spinning BLAS/OpenMP threads there made model tests several times slower
# (tests/bot/test_nlu_encoder.py: 136 s -> 48 s under load). The product makes the same choice for its
# embedder (knowledge/embedding.py, CONCIERGE_EMBED_THREADS=1); numbers do not change.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import pytest  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402
from sqlalchemy import Engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from api.db import make_engine  # noqa: E402
from api.migrate import upgrade  # noqa: E402
from api.scratch_db import create_database, drop_database  # noqa: E402
from api.settings import Settings  # noqa: E402
from api.staff import service as staff_service  # noqa: E402
from api.threaded_server import ThreadedServer  # noqa: E402
from feedback import rollups  # noqa: E402

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from api.clock import Clock
    from tests.fakes.rasa import FakeRasa

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The app's SLA sweeper would alert on other tests' late rows in the shared database (and audit
# them) while a live app runs; tests/api/test_sla_alerts.py switches it on where it is tested.
os.environ.setdefault("CONCIERGE_SLA_SWEEP_INTERVAL_S", "0")
# The suite drives one session from one address far faster than a person types: rate limits are
# switched on by the tests of the limits themselves (tests/api/test_rate_limits.py).
os.environ.setdefault("CONCIERGE_RATE_LIMITS", "false")
# One audit-chain key for every app, worker and CLI the suite starts (they share the test database).
os.environ.setdefault("CONCIERGE_AUDIT_KEY", "test-suite-audit-key")
# The suite is wired like the app: its sessions mark the CX rollup days they change dirty.
rollups.install()

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _postgres_url() -> str | None:
    return os.environ.get("CONCIERGE_TEST_DATABASE_URL") or None


# -- `--database-tests-only`: the PostgreSQL phase of .ci/run --------------------------------------
# Every fixture that reaches the suite's database (engine, session, settings, the live servers, the
# CLI environments) depends on `database_url`; a test whose fixture closure lacks it runs the same on
# any database, so a second run on PostgreSQL would only repeat the SQLite phase. Tests that bring
# their own PostgreSQL (a throw-away database or server) are marked `postgres` and are kept too.

DATABASE_TESTS_ONLY_ENV = "CONCIERGE_DATABASE_TESTS_ONLY"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-tests-only", action="store_true", default=False,
        help="run only tests that use the suite's database (fixture `database_url`) or are marked "
             f"postgres; also switched on by {DATABASE_TESTS_ONLY_ENV}=1",
    )


def database_tests_only(config: pytest.Config) -> bool:
    env = os.environ.get(DATABASE_TESTS_ONLY_ENV, "").strip().lower()
    return bool(config.getoption("--database-tests-only")) or env in {"1", "true", "yes"}


def touches_the_database(item: pytest.Item) -> bool:
    return "database_url" in getattr(item, "fixturenames", ()) or item.get_closest_marker("postgres") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not database_tests_only(config):
        return
    kept = [item for item in items if touches_the_database(item)]
    dropped = [item for item in items if not touches_the_database(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class _SuiteHasher(PasswordHasher):
    """argon2id at its smallest cost, for the staff accounts the suite creates and logs in by the hundred.

    The product's hasher (RFC 9106 "low memory": 64 MiB, 3 passes) costs ~0.15 s a hash and as much a
    verify on this box: ~750 of each made the password hashing about two minutes of every suite run.
    What the tests check (the right password logs in, a wrong one does not, resets, invites, throttling)
    does not depend on the cost. A hash made with the product's parameters (``concierge staff create``
    runs in a subprocess) needs no rehash here either, as in production; the product's own parameters
    are tested with the real hasher (tests/consoles/test_auth.py, ``production_password_hasher``).
    """

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)

    def check_needs_rehash(self, hash: str) -> bool:
        return super().check_needs_rehash(hash) and PRODUCTION_PASSWORD_HASHER.check_needs_rehash(hash)


PRODUCTION_PASSWORD_HASHER = staff_service._hasher


@pytest.fixture(scope="session", autouse=True)
def _suite_password_hasher() -> Iterator[None]:
    staff_service._hasher = _SuiteHasher()
    yield
    staff_service._hasher = PRODUCTION_PASSWORD_HASHER


@pytest.fixture()
def production_password_hasher(monkeypatch: pytest.MonkeyPatch) -> PasswordHasher:
    """The product's password hasher in place of the suite's cheap one, for this test."""
    monkeypatch.setattr(staff_service, "_hasher", PRODUCTION_PASSWORD_HASHER)
    return PRODUCTION_PASSWORD_HASHER


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pg = _postgres_url()
    if pg:
        url = create_database(pg, "concierge_test")
        yield url
        drop_database(url)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture()
def session(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test.

    Service code may ``flush``; nothing it does survives the test.
    """
    conn = engine.connect()
    trans = conn.begin()
    sess = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield sess
    finally:
        sess.close()
        trans.rollback()
        conn.close()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One safety-screen model per test session (training takes seconds; do it once)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture()
def settings(tmp_path: Path, database_url: str, model_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        model_dir=model_dir,
        rasa_url="http://127.0.0.1:9",  # nothing listens: tests that need Rasa say so
        rasa_timeout=2.0,
    )


# -- apps in this process (TestClient) ------------------------------------------------------------

@pytest.fixture()
def open_app(engine: Engine) -> Iterator[Callable[..., TestClient]]:
    """Start apps on the test database with a fake Rasa (a new one unless given) and no safety screen
    unless one is given (``safety_hook``); every one is closed at the end of the test. Extra keywords go
    to ``TestClient``."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.pipeline.turn import null_safety_hook
    from tests.fakes.rasa import FakeRasa

    clients: list[TestClient] = []

    def open_(settings: Settings, rasa: FakeRasa | None = None, *, clock: Clock | None = None,
              safety_hook: Any = null_safety_hook, **client_options: Any) -> TestClient:
        app = create_app(settings, engine=engine, safety_hook=safety_hook, clock=clock,
                         rasa_transport=(rasa or FakeRasa()).transport(), warm_knowledge=False)
        client = TestClient(app, **client_options)
        client.__enter__()
        clients.append(client)
        return client

    yield open_
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture()
def make_client(open_app: Callable[..., TestClient], settings: Settings) -> Callable[..., TestClient]:
    """Build an app on the test database with a fake Rasa (and these settings changed)."""

    def make(rasa: FakeRasa, **overrides: object) -> TestClient:
        return open_app(settings.model_copy(update=overrides) if overrides else settings, rasa)

    return make


# -- the live product: api (uvicorn thread) + real Rasa server (subprocess) ----------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_available(url: str) -> bool:
    """Whether a Redis server answers at ``url`` (the tests that need one are skipped without it)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


class LiveServer(ThreadedServer):
    """An api served by uvicorn in a background thread."""

    def __init__(self, app: object, port: int) -> None:
        super().__init__(app, port=port, name=f"uvicorn-{port}", label="api", lifespan="on")


class LiveStack:
    def __init__(self, api: LiveServer, rasa_url: str, rasa_proc: object, settings: Settings) -> None:
        self.api = api
        self.api_url = api.url
        self.rasa_url = rasa_url
        self.rasa_proc = rasa_proc
        self.settings = settings


@pytest.fixture(scope="session")
def live_stack(
    engine: Engine, database_url: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    """The whole product on loopback: a real Rasa 3.6 server calling actions on a real api."""
    from api.app import create_app
    from api.rasa import process

    var = tmp_path_factory.mktemp("live-var")
    api_port, rasa_port = free_port(), free_port()
    # Web chat only: WhatsApp ingest and dispatch are left to a `concierge worker` that never runs here, so
    # this session-long app never picks up the webhooks the WhatsApp tests store in the shared database.
    settings = Settings(database_url=database_url, var_dir=var, port=api_port, model_dir=model_dir,
                        rasa_url=f"http://127.0.0.1:{rasa_port}", rasa_timeout=8.0, whatsapp_worker="process")
    model = process.ensure_model(settings)
    api = LiveServer(create_app(settings, engine=engine), api_port).start()
    log_file = var / "rasa.log"
    proc = process.start_rasa(settings, model, port=rasa_port, action_url=f"{api.url}/rasa/webhook",
                              log_file=log_file)
    try:
        process.wait_until_ready(settings.rasa_url, settings.rasa_token, proc=proc, timeout=240)
    except Exception:
        process.stop(proc)
        api.stop()
        raise RuntimeError("Rasa did not start; log:\n" + log_file.read_text()[-3000:]) from None
    yield LiveStack(api, settings.rasa_url, proc, settings)
    process.stop(proc)
    api.stop()


@pytest.fixture(scope="session")
def rasa_server(live_stack: LiveStack) -> str:
    """URL of the real Rasa server of the live stack."""
    return live_stack.rasa_url
