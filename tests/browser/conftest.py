"""Browser fixtures: Debian Chromium driven by Playwright (sync API), and live servers.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium``
(install it with ``scripts/ensure_chromium.sh``). Every test in this folder is
marked ``browser``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from api.app import create_app
from api.handoffs import screening
from api.pipeline.turn import null_safety_hook
from api.settings import Settings
from api.threaded_server import ThreadedServer
from tests.browser.fake_api import FakeChatApi
from tests.conftest import REPO
from tests.fakes.rasa import FakeRasa

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENS_DIR = REPO / "var" / "screens"
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


# ------------------------------------------------------------------ servers


@contextmanager
def serve_app(app: Any, *, startup_timeout: float = 20.0) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a background thread on a free loopback port.

    Yields the base URL; stops the server and joins the thread on exit.
    """
    server = ThreadedServer(app, name="test-server", label="the test server", lifespan="auto", ws="none",
                            access_log=False).start(startup_timeout)
    try:
        yield server.url
    finally:
        server.stop(timeout=10)


def end_live_streams(app: Any) -> None:
    """The page may still hold its live event stream open (the browser context closes after the
    server): end the app's streams so uvicorn's graceful stop does not wait for them."""
    app.state.concierge.relay.request_shutdown()


@pytest.fixture(scope="session")
def knowledge_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("knowledge-index")


@pytest.fixture()
def settings(settings: Settings, knowledge_index_dir: Path) -> Settings:
    """The suite's settings with one knowledge index directory for the whole session, as a deployment has:
    the pages that rank approved content (the inbox's assist panel, the reply screen) load the MiniLM model
    and embed the shared test database's library once, not again for every test's fresh ``var`` directory
    (seconds each; the index follows the database's current versions either way)."""
    return settings.model_copy(update={"index_dir": knowledge_index_dir})


@pytest.fixture()
def fake_api() -> FakeChatApi:
    return FakeChatApi(staff_delay=1.0)


@pytest.fixture()
def fake_server(fake_api: FakeChatApi) -> Iterator[str]:
    """The stand-in chat API (tests/browser/fake_api.py) serving the real page."""
    with serve_app(fake_api.app) as url:
        yield url


@pytest.fixture()
def fake_rasa() -> FakeRasa:
    return FakeRasa()


@pytest.fixture()
def live_server(engine: Engine, settings: Settings, fake_rasa: FakeRasa) -> Iterator[str]:
    """The real application (``api.app.create_app``) on a free loopback port.

    It uses the migrated test database and the fake Rasa of ``tests/fakes/rasa.py``
    (replies ``echo: <text>`` with a "Talk to a person" quick reply), so the page is
    tested against the real JSON API with deterministic bot turns. The safety screen
    is the null hook: screening has its own tests, this fixture is about the page.
    """
    app = create_app(
        settings,
        engine=engine,
        safety_hook=null_safety_hook,
        rasa_transport=fake_rasa.transport(),
        warm_knowledge=False,
    )
    # Staff replies pass the staff reply screen: load its AE model before the page times a reply.
    screening.screener_for(settings).warm_up()
    with serve_app(app) as url:
        try:
            yield url
        finally:
            end_live_streams(app)


@pytest.fixture()
def live_rasa_stack_url(request: pytest.FixtureRequest, engine: Engine, settings: Settings) -> Iterator[str]:
    """Base URL of the real api talking to the real Rasa (``rasa_server`` from tests/conftest.py).

    Uses the session's ``live_stack`` api when there is one (Rasa calls its actions
    there); otherwise serves an app of its own pointed at ``rasa_server``.
    """
    try:
        rasa_url = str(request.getfixturevalue("rasa_server"))
    except pytest.FixtureLookupError:
        pytest.skip("the rasa_server fixture is not defined in tests/conftest.py yet")
    try:
        stack = request.getfixturevalue("live_stack")
    except pytest.FixtureLookupError:
        stack = None
    if stack is not None:
        yield str(stack.api_url)
        return
    app = create_app(settings.model_copy(update={"rasa_url": rasa_url}), engine=engine, warm_knowledge=False)
    with serve_app(app) as url:
        try:
            yield url
        finally:
            end_live_streams(app)


# ------------------------------------------------------------------ browser


# Package scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and later tests that call asyncio.run() must not see it.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run scripts/ensure_chromium.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def _fresh_page(browser: Any, *, width: int, height: int, timeout_ms: int) -> Iterator[Any]:
    """A page in its own browser context (own cookies and sessionStorage).

    Uncaught JavaScript errors on the page fail the test.
    """
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(timeout_ms)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """The HCP's side (or the only side): a fresh context with one page."""
    with _fresh_page(browser, width=1100, height=800, timeout_ms=5000) as pg:
        yield pg


@pytest.fixture()
def staff_page(browser: Any) -> Iterator[Any]:
    """A second, independent context for the staff side (a console is wider, pages reload after actions)."""
    with _fresh_page(browser, width=1280, height=900, timeout_ms=10000) as pg:
        yield pg


@pytest.fixture()
def screens_dir() -> Path:
    SCREENS_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENS_DIR
