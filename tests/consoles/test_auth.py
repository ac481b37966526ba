"""Staff login: argon2id hashes, HttpOnly SameSite cookies, CSRF, throttling, TOTP, logout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import pyotp
import pytest
from argon2 import PasswordHasher, Type
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import sessionmaker

from api.audit.models import AuditEvent
from api.db import unit_of_work
from api.settings import Settings
from api.staff import service
from api.staff.models import LoginAttempt, StaffUser
from tests.consoles.conftest import StaffAccount, login, post_login


def test_passwords_are_stored_as_argon2id_hashes(engine: Engine, make_staff: Callable[..., StaffAccount]) -> None:
    account = make_staff("rep")
    with sessionmaker(bind=engine)() as s:
        user = s.get(StaffUser, account.id)
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert account.password not in user.password_hash


def test_the_product_hashes_with_the_rfc_9106_low_memory_parameters_and_logs_in_with_them(
        production_password_hasher: PasswordHasher, console: TestClient, engine: Engine,
        make_staff: Callable[..., StaffAccount]) -> None:
    """The suite's other staff accounts use a cheap argon2id (tests/conftest.py); this one the product's."""
    assert (production_password_hasher.type, production_password_hasher.time_cost,
            production_password_hasher.memory_cost, production_password_hasher.parallelism) == (Type.ID, 3, 65536, 4)
    account = make_staff("rep")
    with sessionmaker(bind=engine)() as s:
        user = s.get(StaffUser, account.id)
        assert user is not None
        stored = user.password_hash
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    wrong = post_login(_from(console, "198.51.100.9"), {"email": account.email, "password": "not the password!"})
    assert wrong.status_code == 401
    assert login(console, account)
    with sessionmaker(bind=engine)() as s:
        user = s.get(StaffUser, account.id)
        assert user is not None and user.password_hash == stored  # no rehash: already the product's parameters


def test_login_sets_an_httponly_samesite_cookie_and_lands_on_the_console(
        console: TestClient, make_staff: Callable[..., StaffAccount]) -> None:
    account = make_staff("rep")
    res = post_login(console, {"email": account.email.upper(), "password": account.password,
                                               "next": "/console/account"})
    assert res.status_code == 303
    assert res.headers["location"] == "/console/account"
    cookie = res.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = console.get("/console")
    assert page.status_code == 200 and "Welcome" in page.text


def test_secure_flag_is_set_when_configured(make_app_client: Callable[[], TestClient], settings: Settings,
                                            make_staff: Callable[..., StaffAccount]) -> None:
    settings.secure_cookies = True
    client = make_app_client()
    account = make_staff("rep")
    res = post_login(client, {"email": account.email, "password": account.password})
    assert "secure" in res.headers["set-cookie"].lower()


def test_wrong_password_is_refused_and_audited(console: TestClient, engine: Engine,
                                               make_staff: Callable[..., StaffAccount]) -> None:
    account = make_staff("rep")
    res = post_login(console, {"email": account.email, "password": "not the password!"})
    assert res.status_code == 401
    assert "wrong email or password" in res.text
    assert "concierge_staff" not in res.headers.get("set-cookie", "")
    with sessionmaker(bind=engine)() as s:
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.subject_id == account.id)).scalars().all()
    assert "staff.login_failed" in actions


def test_unknown_email_gets_the_same_answer_as_a_wrong_password(console: TestClient) -> None:
    res = post_login(console, {"email": "nobody@halcyon.example", "password": "whatever-it-is"})
    assert res.status_code == 401 and "wrong email or password" in res.text


def test_five_failures_lock_the_account_for_fifteen_minutes_even_with_the_right_password(
        console: TestClient, make_staff: Callable[..., StaffAccount]) -> None:
    account = make_staff("rep")
    for _ in range(service.MAX_FAILURES_PER_EMAIL):
        assert post_login(console, {"email": account.email, "password": "wrong-wrong-wrong"}
                            ).status_code == 401
    res = post_login(console, {"email": account.email, "password": account.password})
    assert res.status_code == 429
    assert "too many failed attempts" in res.text


def test_pages_redirect_to_login_and_api_calls_get_401(console: TestClient) -> None:
    page = console.get("/console/account")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/login?next=%2Fconsole%2Faccount"
    api = console.get("/console/account", headers={"accept": "application/json"})
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "login_required"


def test_open_redirects_are_not_followed_after_login(console: TestClient,
                                                     make_staff: Callable[..., StaffAccount]) -> None:
    account = make_staff("rep")
    res = post_login(console, {"email": account.email, "password": account.password,
                                               "next": "//evil.example/steal"})
    assert res.headers["location"] == "/console"


def test_forms_without_the_csrf_token_are_refused(logged_in: Callable[..., tuple[TestClient, StaffAccount, str]]
                                                  ) -> None:
    client, _account, csrf = logged_in("rep")
    refused = client.post("/console/account/availability", data={"available": "false"})
    assert refused.status_code == 403
    wrong = client.post("/console/account/availability", data={"available": "false", "csrf_token": "x" * 40})
    assert wrong.status_code == 403
    ok = client.post("/console/account/availability", data={"available": "false", "csrf_token": csrf})
    assert ok.status_code == 303
    header = client.post("/console/account/availability", data={"available": "true"},
                         headers={"x-csrf-token": csrf})
    assert header.status_code == 303


def test_logout_ends_the_session(logged_in: Callable[..., tuple[TestClient, StaffAccount, str]]) -> None:
    client, _account, csrf = logged_in("msl")
    token = client.cookies.get("concierge_staff")
    res = client.post("/console/logout", data={"csrf_token": csrf})
    assert res.status_code == 303
    # Even a stolen copy of the old cookie no longer works.
    client.cookies.set("concierge_staff", token or "")
    assert client.get("/console", headers={"accept": "application/json"}).status_code == 401


def test_totp_second_factor(logged_in: Callable[..., tuple[TestClient, StaffAccount, str]],
                            make_app_client: Callable[[], TestClient]) -> None:
    client, account, csrf = logged_in("safety")
    secret = pyotp.random_base32()
    bad = client.post("/console/account/totp", data={"csrf_token": csrf, "secret": secret, "code": "000000"})
    assert bad.status_code == 422
    good = client.post("/console/account/totp", data={"csrf_token": csrf, "secret": secret,
                                                      "code": pyotp.TOTP(secret).now()})
    assert good.status_code == 200 and "Two-factor authentication is on" in good.text

    other = make_app_client()
    asked = post_login(other, {"email": account.email, "password": account.password})
    assert asked.status_code == 401 and "authenticator" in asked.text
    wrong = post_login(other, {"email": account.email, "password": account.password,
                                               "totp": "123456" if pyotp.TOTP(secret).now() != "123456" else "654321"})
    assert wrong.status_code == 401
    assert login(other, account, totp=pyotp.TOTP(secret).now())


def test_staff_create_command_makes_the_first_admin(settings: Settings, engine: Engine) -> None:
    email = f"first-admin-{datetime.now(UTC).timestamp():.0f}@halcyon.example"
    # The suite's audit key too: without it the command would sign with the key file of <repo>/var
    # and break the shared test database's chain for every later verify.
    env = {"CONCIERGE_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin",
           "CONCIERGE_AUDIT_KEY": os.environ["CONCIERGE_AUDIT_KEY"]}
    done = subprocess.run([sys.executable, "-m", "api.cli", "staff", "create", "--email", email, "--role", "admin",
                           "--password-stdin"], input="a long enough password\n", capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    with unit_of_work(sessionmaker(bind=engine)) as s:
        user = s.execute(select(StaffUser).where(StaffUser.email == email)).scalar_one()
        assert user.roles == ["admin"]
    short = subprocess.run([sys.executable, "-m", "api.cli", "staff", "create", "--email", "x@halcyon.example",
                            "--role", "admin", "--password-stdin"], input="short\n", capture_output=True, text=True,
                           env=env, timeout=120)
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    dup = subprocess.run([sys.executable, "-m", "api.cli", "staff", "create", "--email", email, "--role", "admin",
                          "--password-stdin"], input="a long enough password\n", capture_output=True, text=True,
                         env=env, timeout=120)
    assert dup.returncode == 2 and "already exists" in dup.stderr


@pytest.mark.parametrize("roles", [[], ["superuser"]])
def test_unknown_or_missing_roles_are_refused(engine: Engine, roles: list[str]) -> None:
    with sessionmaker(bind=engine)() as s, pytest.raises(Exception, match="role"):
        service.create(s, email="r@halcyon.example", password="long enough password", roles=roles,
                       now=datetime.now(UTC))


def _from(app_client: TestClient, address: str) -> TestClient:
    """Another browser on another address, on the same running app."""
    return TestClient(app_client.app, client=(address, 40000), follow_redirects=False)


def test_a_login_post_without_the_forms_token_is_refused_and_nobody_is_logged_in(
        console: TestClient, make_staff: Callable[..., StaffAccount]) -> None:
    account = make_staff("rep")
    console.get("/console/login")                                   # the cookie alone is not enough
    res = console.post("/console/login", data={"email": account.email, "password": account.password,
                                               "csrf": "forged-by-another-site"})
    assert res.status_code == 403 and "expired" in res.text
    assert "concierge_staff=" not in res.headers.get("set-cookie", "")
    assert post_login(console, {"email": account.email, "password": account.password}).status_code == 303


def test_failures_from_one_address_do_not_lock_the_staff_member_out_elsewhere(
        console: TestClient, make_staff: Callable[..., StaffAccount]) -> None:
    account = make_staff("safety")
    guesser, colleague = _from(console, "198.51.100.7"), _from(console, "203.0.113.20")
    for _ in range(service.MAX_FAILURES_PER_EMAIL):
        assert post_login(guesser, {"email": account.email, "password": "a wrong guess"}).status_code == 401
    locked = post_login(guesser, {"email": account.email, "password": account.password})
    assert locked.status_code == 429 and "from here" in locked.text          # even the right password, here
    assert post_login(colleague, {"email": account.email, "password": account.password}).status_code == 303


def test_guessing_from_many_addresses_slows_the_account_down_without_locking_it(
        console: TestClient, make_staff: Callable[..., StaffAccount], engine: Engine) -> None:
    account = make_staff("rep")
    for i in range(service.SLOWDOWN_AFTER):
        post_login(_from(console, f"192.0.2.{i + 1}"), {"email": account.email, "password": "guess"})
    slowed = post_login(_from(console, "192.0.2.200"), {"email": account.email, "password": account.password})
    assert slowed.status_code == 429 and "wait a few seconds" in slowed.text
    # A few seconds later the right password works, from anywhere.
    factory = sessionmaker(bind=engine)
    with unit_of_work(factory) as s:
        s.execute(update(LoginAttempt).where(LoginAttempt.email == account.email)
                  .values(at=datetime.now(UTC) - service.SLOWDOWN_INTERVAL * 2))
    assert post_login(_from(console, "192.0.2.201"), {"email": account.email,
                                                      "password": account.password}).status_code == 303


def test_x_forwarded_for_is_believed_only_from_a_configured_proxy(
        make_app_client: Callable[[], TestClient], settings: Settings, make_staff: Callable[..., StaffAccount],
        engine: Engine) -> None:
    settings.trusted_proxies = ["10.0.0.0/8"]
    app_client = make_app_client()
    account = make_staff("rep")
    spoofer = _from(app_client, "198.51.100.50")          # not a proxy: its header is ignored
    proxy = _from(app_client, "10.1.2.3")                 # the proxy passes the real client on
    post_login(spoofer, {"email": account.email, "password": "x"})
    spoofer.headers["x-forwarded-for"] = "203.0.113.99"
    post_login(spoofer, {"email": account.email, "password": "y"})
    proxy.headers["x-forwarded-for"] = "203.0.113.77, 10.9.9.9"
    post_login(proxy, {"email": account.email, "password": "z"})
    with sessionmaker(bind=engine)() as s:
        clients = s.execute(select(LoginAttempt.client).where(LoginAttempt.email == account.email)
                            .order_by(LoginAttempt.id)).scalars().all()
    assert clients == ["198.51.100.50", "198.51.100.50", "203.0.113.77"]


def test_cookies_are_secure_whenever_the_public_url_is_https(
        make_app_client: Callable[[], TestClient], settings: Settings, make_staff: Callable[..., StaffAccount]) -> None:
    settings.public_url = "https://concierge.example"
    client = make_app_client()
    page = client.get("/console/login")
    assert "secure" in page.headers["set-cookie"].lower()
    res = post_login(client, {"email": make_staff("rep").email, "password": "correct horse battery staple"})
    assert "secure" in res.headers["set-cookie"].lower()
    assert "secure" in client.post("/api/webchat/sessions").headers["set-cookie"].lower()


@pytest.mark.parametrize("path", ["/console/login", "/", "/api/webchat/sessions", "/healthz", "/console/account"])
def test_every_response_carries_the_security_headers(console: TestClient, path: str) -> None:
    res = console.post(path) if path == "/api/webchat/sessions" else console.get(path)
    csp = res.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert res.headers["x-frame-options"] == "DENY"
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in res.headers   # only on https
