"""The admin console: staff users, roles, territory, activation, password resets; the last-admin rule."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.audit.models import AuditEvent
from api.errors import Conflict, InvalidInput
from api.staff import service
from api.staff.models import StaffRole, StaffSession, StaffUser
from tests.consoles.conftest import CSRF_META as CSRF
from tests.consoles.conftest import PASSWORD, StaffAccount, login, post_login

Client = tuple[TestClient, StaffAccount, str]
NEW_PASSWORD = "a much longer passphrase 42"


def email() -> str:
    return f"new-{uuid.uuid4().hex[:10]}@halcyon.example"


@pytest.fixture()
def factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def user_by_email(factory: sessionmaker[Session], address: str) -> StaffUser | None:
    with factory() as s:
        return s.scalars(select(StaffUser).where(StaffUser.email == address)).one_or_none()


def actions_on(factory: sessionmaker[Session], staff_id: str) -> list[tuple[str, str | None]]:
    with factory() as s:
        return [(e.action, e.actor_id) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.subject_id == staff_id).order_by(AuditEvent.seq))]


def create(client: TestClient, csrf: str, **over: object) -> object:
    form: dict[str, object] = {"csrf_token": csrf, "email": email(), "name": "New Person",
                               "roles": ["rep"], "territory": "north", "password": NEW_PASSWORD}
    form.update(over)
    return client.post("/console/admin/users", data=form)


# -- access ---------------------------------------------------------------------------------------

def test_only_admins_reach_the_admin_console_pages_json_and_actions(
        logged_in: Callable[..., Client], make_staff: Callable[..., StaffAccount],
        factory: sessionmaker[Session]) -> None:
    target = make_staff("rep")
    for role in StaffRole:
        client, _acc, csrf = logged_in(str(role))
        address = email()
        got = {
            "page": client.get("/console/admin").status_code,
            "user": client.get(f"/console/admin/users/{target.id}").status_code,
            "json": client.get("/api/staff/admin/users", headers={"accept": "application/json"}).status_code,
            "create": create(client, csrf, email=address).status_code,  # type: ignore[attr-defined]
            "update": client.post(f"/console/admin/users/{target.id}",
                                  data={"csrf_token": csrf, "roles": ["admin"]}).status_code,
            "active": client.post(f"/console/admin/users/{target.id}/active",
                                  data={"csrf_token": csrf, "active": "false"}).status_code,
            "password": client.post(f"/console/admin/users/{target.id}/password",
                                    data={"csrf_token": csrf, "password": NEW_PASSWORD}).status_code,
        }
        if role == StaffRole.admin:
            assert got == {"page": 200, "user": 200, "json": 200, "create": 303, "update": 303, "active": 303,
                           "password": 303}
            assert user_by_email(factory, address) is not None
        else:
            assert set(got.values()) == {403}, (role, got)
            assert user_by_email(factory, address) is None
    guessed = uuid.uuid4().hex
    client, _acc, csrf = logged_in("admin")
    assert client.get(f"/console/admin/users/{guessed}").status_code == 404
    assert client.post(f"/console/admin/users/{guessed}/active",
                       data={"csrf_token": csrf, "active": "false"}).status_code == 404


def test_the_users_list_shows_roles_territory_activity_2fa_and_last_login_but_no_secrets(
        logged_in: Callable[..., Client], make_staff: Callable[..., StaffAccount], engine: Engine,
        make_app_client: Callable[[], TestClient]) -> None:
    client, _acc, _csrf = logged_in("admin")
    other = make_staff("msl", "rep", territory="west")
    login(make_app_client(), other)
    page = client.get("/console/admin")
    assert page.status_code == 200
    row = page.text.split(other.email, 1)[1].split("</tr>", 1)[0]
    assert "msl, rep" in row and "west" in row and "active" in row and "off" in row and "never" not in row
    users = client.get("/api/staff/admin/users", headers={"accept": "application/json"}).json()["users"]
    mine = next(u for u in users if u["id"] == other.id)
    assert mine["roles"] == ["msl", "rep"] and mine["territory"] == "west" and mine["totp"] is False
    assert mine["last_login_at"] is not None
    with sessionmaker(bind=engine)() as s:
        hashed = s.get(StaffUser, other.id).password_hash  # type: ignore[union-attr]
    assert hashed not in page.text and "password_hash" not in str(users) and "totp_secret" not in str(users)


# -- create, update, deactivate, reset ------------------------------------------------------------

def test_an_admin_creates_a_user_who_can_then_log_in(logged_in: Callable[..., Client],
                                                      make_app_client: Callable[[], TestClient],
                                                      factory: sessionmaker[Session]) -> None:
    client, admin, csrf = logged_in("admin")
    address = email()
    res = create(client, csrf, email=address.upper(), roles=["msl", "medical_reviewer"], territory="south")
    assert res.status_code == 303  # type: ignore[attr-defined]
    user = user_by_email(factory, address)
    assert user is not None and user.roles == ["medical_reviewer", "msl"] and user.territory == "south"
    assert user.name == "New Person" and user.active
    assert res.headers["location"] == f"/console/admin/users/{user.id}?done=created"  # type: ignore[attr-defined]
    assert "User created." in client.get(res.headers["location"]).text  # type: ignore[attr-defined]
    assert ("staff.created", admin.id) in actions_on(factory, user.id)
    fresh = make_app_client()
    _first_login_changes_the_temporary_password(fresh, address, NEW_PASSWORD)
    assert fresh.get("/console/medical").status_code == 200


def test_an_admin_changes_roles_and_territory(logged_in: Callable[..., Client], make_staff: Callable[..., StaffAccount],
                                              factory: sessionmaker[Session]) -> None:
    client, admin, csrf = logged_in("admin")
    target = make_staff("rep", territory="north")
    res = client.post(f"/console/admin/users/{target.id}",
                      data={"csrf_token": csrf, "roles": ["msl", "cx_analyst"], "territory": " east "})
    assert res.status_code == 303
    user = user_by_email(factory, target.email)
    assert user is not None and user.roles == ["cx_analyst", "msl"] and user.territory == "east"
    assert ("staff.updated", admin.id) in actions_on(factory, target.id)
    page = client.get(res.headers["location"])
    assert "Roles and territory saved." in page.text
    cleared = client.post(f"/console/admin/users/{target.id}",
                          data={"csrf_token": csrf, "roles": ["msl"], "territory": ""})
    assert cleared.status_code == 303
    assert user_by_email(factory, target.email).territory is None  # type: ignore[union-attr]


def test_deactivation_logs_the_user_out_everywhere_and_reactivation_lets_them_back(
        logged_in: Callable[..., Client], factory: sessionmaker[Session]) -> None:
    client, admin, csrf = logged_in("admin")
    victim_client, victim, _ = logged_in("rep")
    assert victim_client.get("/console").status_code == 200
    res = client.post(f"/console/admin/users/{victim.id}/active", data={"csrf_token": csrf, "active": "false"})
    assert res.status_code == 303 and res.headers["location"].endswith("done=deactivated")
    assert victim_client.get("/console").status_code == 303  # back to the login page
    assert post_login(victim_client, {"email": victim.email, "password": victim.password}
                              ).status_code == 401
    with factory() as s:
        assert all(r.revoked_at is not None for r in s.scalars(
            select(StaffSession).where(StaffSession.staff_id == victim.id)))
    assert "inactive" in client.get("/console/admin").text.split(victim.email, 1)[1].split("</tr>", 1)[0]
    res = client.post(f"/console/admin/users/{victim.id}/active", data={"csrf_token": csrf, "active": "true"})
    assert res.status_code == 303
    login(victim_client, victim)
    assert [a for a in actions_on(factory, victim.id) if a[0] == "staff.updated"] == [
        ("staff.updated", admin.id), ("staff.updated", admin.id)]


def test_a_password_reset_replaces_the_password_and_ends_sessions(
        logged_in: Callable[..., Client], factory: sessionmaker[Session]) -> None:
    client, admin, csrf = logged_in("admin")
    victim_client, victim, _ = logged_in("rep")
    res = client.post(f"/console/admin/users/{victim.id}/password", data={"csrf_token": csrf,
                                                                         "password": NEW_PASSWORD})
    assert res.status_code == 303
    assert victim_client.get("/console").status_code == 303
    assert post_login(victim_client, {"email": victim.email, "password": PASSWORD}
                              ).status_code == 401
    _first_login_changes_the_temporary_password(victim_client, victim.email, NEW_PASSWORD)
    assert ("staff.password_set", admin.id) in actions_on(factory, victim.id)
    assert ("staff.password_changed", victim.id) in actions_on(factory, victim.id)


OWN_PASSWORD = "my own choice of passphrase 7"


def _first_login_changes_the_temporary_password(client: TestClient, address: str, temporary: str) -> None:
    """An admin-set password lets the user in only to choose their own."""
    assert post_login(client, {"email": address, "password": temporary, "next": "/console"}).status_code == 303
    for path in ("/console", "/console/inbox", "/console/medical"):
        res = client.get(path)
        assert res.status_code == 303 and res.headers["location"] == "/console/account/password", path
    assert client.get("/api/staff/inbox", headers={"accept": "application/json"}).json()["error"]["code"] == \
        "password_change_required"
    page = client.get("/console/account/password")
    assert page.status_code == 200 and 'data-testid="password-forced"' in page.text
    csrf = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    wrong = client.post("/console/account/password", data={"csrf_token": csrf, "current": "not it at all 123",
                                                           "new": OWN_PASSWORD, "confirm": OWN_PASSWORD})
    assert wrong.status_code == 422 and "current password is not right" in wrong.text
    same = client.post("/console/account/password", data={"csrf_token": csrf, "current": temporary,
                                                          "new": temporary, "confirm": temporary})
    assert same.status_code == 422 and "different" in same.text
    mismatch = client.post("/console/account/password", data={"csrf_token": csrf, "current": temporary,
                                                              "new": OWN_PASSWORD, "confirm": OWN_PASSWORD + "x"})
    assert mismatch.status_code == 422 and "not the same" in mismatch.text
    done = client.post("/console/account/password", data={"csrf_token": csrf, "current": temporary,
                                                          "new": OWN_PASSWORD, "confirm": OWN_PASSWORD})
    assert done.status_code == 303 and client.get("/console").status_code == 200


def test_an_invited_colleague_chooses_their_own_password_once(
        logged_in: Callable[..., Client], make_app_client: Callable[[], TestClient],
        factory: sessionmaker[Session]) -> None:
    import re

    client, admin, csrf = logged_in("admin")
    address = email()
    page = client.post("/console/admin/users", data={"csrf_token": csrf, "email": address, "name": "Ina Vited",
                                                     "roles": ["rep"], "territory": "", "password": ""})
    assert page.status_code == 200 and 'data-testid="invite-link"' in page.text
    link = re.search(r'data-testid="invite-link">[^<]*(/console/invite/[A-Za-z0-9_-]+)<', page.text).group(1)  # type: ignore[union-attr]
    user = user_by_email(factory, address)
    assert user is not None and user.must_change_password and user.invite_token_hash
    assert link.rsplit("/", 1)[1] not in str(actions_on(factory, user.id))   # the token is never stored or logged
    fresh = make_app_client()
    form = fresh.get(link)
    assert form.status_code == 200 and address in form.text
    short = fresh.post(link, data={"password": "short", "confirm": "short"})
    assert short.status_code == 422 and "at least 12" in short.text
    ok = fresh.post(link, data={"password": OWN_PASSWORD, "confirm": OWN_PASSWORD})
    assert ok.status_code == 303
    assert fresh.post(link, data={"password": OWN_PASSWORD, "confirm": OWN_PASSWORD}).status_code == 404  # used
    login(fresh, StaffAccount(user.id, address, OWN_PASSWORD, ["rep"]))
    assert fresh.get("/console/inbox").status_code == 200
    assert {("staff.invited", admin.id), ("staff.invite_accepted", user.id)} <= set(actions_on(factory, user.id))


def test_an_expired_invite_is_refused_and_a_new_one_replaces_it(
        logged_in: Callable[..., Client], make_app_client: Callable[[], TestClient],
        factory: sessionmaker[Session]) -> None:
    from datetime import timedelta

    _client, admin, _csrf = logged_in("admin")
    now = datetime.now(UTC)
    with factory.begin() as s:
        user = service.create(s, email=email(), password=None, roles=["msl"], now=now, actor_id=admin.id)
        old = service.invite(s, user, now=now - timedelta(hours=80), actor_id=admin.id)
        user_id = user.id
    fresh = make_app_client()
    expired = fresh.get(f"/console/invite/{old}")
    assert expired.status_code == 422 and "expired" in expired.text
    with factory.begin() as s:
        new = service.invite(s, s.get(StaffUser, user_id), now=now, actor_id=admin.id)  # type: ignore[arg-type]
    assert fresh.get(f"/console/invite/{old}").status_code == 404
    assert fresh.get(f"/console/invite/{new}").status_code == 200
    assert fresh.get("/console/invite/not-a-real-token").status_code == 404


def test_admin_forms_need_the_csrf_token(logged_in: Callable[..., Client], make_staff: Callable[..., StaffAccount],
                                         factory: sessionmaker[Session]) -> None:
    client, _admin, _csrf = logged_in("admin")
    address = email()
    res = create(client, "not-the-token", email=address)
    assert res.status_code == 403  # type: ignore[attr-defined]
    assert user_by_email(factory, address) is None
    target = make_staff("rep")
    res2 = client.post(f"/console/admin/users/{target.id}/active", data={"active": "false"})
    assert res2.status_code == 403
    assert user_by_email(factory, target.email).active  # type: ignore[union-attr]


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("over, status, message", [
    ({"roles": ["rep", "superuser"]}, 422, "unknown role(s): superuser"),
    ({"roles": []}, 422, "a staff user needs at least one role"),
    ({"email": "not-an-email"}, 422, "not an email address"),
    ({"password": "short pw"}, 422, "password must be at least 12 characters"),
])
def test_bad_input_on_create_is_explained_on_the_page_and_creates_nothing(
        logged_in: Callable[..., Client], factory: sessionmaker[Session], over: dict[str, object], status: int,
        message: str) -> None:
    client, _admin, csrf = logged_in("admin")
    address = email()
    form = {"email": address, **over}
    res = create(client, csrf, **form)
    assert res.status_code == status  # type: ignore[attr-defined]
    text = res.text  # type: ignore[attr-defined]
    assert message in text.replace("&#39;", "'") and 'class="flash error"' in text
    assert "New Person" in text  # what was typed is kept (except the password)
    assert user_by_email(factory, address) is None
    with factory() as s:
        assert s.scalars(select(StaffUser).where(StaffUser.email == "not-an-email")).first() is None


def test_a_duplicate_email_is_refused(logged_in: Callable[..., Client], make_staff: Callable[..., StaffAccount],
                                      factory: sessionmaker[Session]) -> None:
    client, _admin, csrf = logged_in("admin")
    existing = make_staff("rep")
    res = create(client, csrf, email=existing.email.upper(), roles=["admin"], password=NEW_PASSWORD)
    assert res.status_code == 409  # type: ignore[attr-defined]
    assert f"a staff user with email {existing.email} already exists" in res.text  # type: ignore[attr-defined]
    user = user_by_email(factory, existing.email)
    assert user is not None and user.roles == ["rep"]


def test_bad_input_on_update_and_reset_changes_nothing(logged_in: Callable[..., Client],
                                                        make_staff: Callable[..., StaffAccount],
                                                        make_app_client: Callable[[], TestClient],
                                                        factory: sessionmaker[Session]) -> None:
    client, _admin, csrf = logged_in("admin")
    target = make_staff("rep", territory="north")
    res = client.post(f"/console/admin/users/{target.id}",
                      data={"csrf_token": csrf, "roles": ["rep", "overlord"], "territory": "south"})
    assert res.status_code == 422 and "unknown role(s): overlord" in res.text
    res = client.post(f"/console/admin/users/{target.id}", data={"csrf_token": csrf, "territory": "south"})
    assert res.status_code == 422 and "needs at least one role" in res.text
    res = client.post(f"/console/admin/users/{target.id}/password", data={"csrf_token": csrf, "password": "short"})
    assert res.status_code == 422 and "at least 12 characters" in res.text
    user = user_by_email(factory, target.email)
    assert user is not None and user.roles == ["rep"] and user.territory == "north"
    login(make_app_client(), target)  # the old password still works


def test_an_admin_cannot_deactivate_themself(logged_in: Callable[..., Client], factory: sessionmaker[Session]) -> None:
    client, admin, csrf = logged_in("admin")
    page = client.get(f"/console/admin/users/{admin.id}")
    assert "You cannot deactivate your own account." in page.text
    res = client.post(f"/console/admin/users/{admin.id}/active", data={"csrf_token": csrf, "active": "false"})
    assert res.status_code == 422 and "you cannot deactivate your own account" in res.text
    assert user_by_email(factory, admin.email).active  # type: ignore[union-attr]
    assert client.get("/console/admin").status_code == 200


# -- the last active admin ---------------------------------------------------------------------------

@pytest.fixture()
def sole_admin(factory: sessionmaker[Session], make_staff: Callable[..., StaffAccount]) -> Iterator[StaffAccount]:
    """Make one admin the only active admin for the test (other tests' admins are restored after)."""
    account = make_staff("admin")
    with factory() as s:
        active = s.scalars(select(StaffUser).where(StaffUser.active.is_(True), StaffUser.id != account.id))
        others = [u.id for u in active if "admin" in u.roles]
        if others:
            s.execute(update(StaffUser).where(StaffUser.id.in_(others)).values(active=False))
        s.commit()
    try:
        yield account
    finally:
        with factory() as s:
            if others:
                s.execute(update(StaffUser).where(StaffUser.id.in_(others)).values(active=True))
            s.commit()


def test_the_last_active_admin_cannot_drop_their_admin_role_until_there_is_another(
        sole_admin: StaffAccount, make_app_client: Callable[[], TestClient], factory: sessionmaker[Session]) -> None:
    client = make_app_client()
    csrf = login(client, sole_admin)
    res = client.post(f"/console/admin/users/{sole_admin.id}", data={"csrf_token": csrf, "roles": ["content_admin"]})
    assert res.status_code == 409 and "is the last active admin" in res.text
    assert user_by_email(factory, sole_admin.email).roles == ["admin"]  # type: ignore[union-attr]

    second = email()
    assert create(client, csrf, email=second, roles=["admin"]).status_code == 303  # type: ignore[attr-defined]
    res = client.post(f"/console/admin/users/{sole_admin.id}", data={"csrf_token": csrf, "roles": ["content_admin"]})
    assert res.status_code == 303
    assert user_by_email(factory, sole_admin.email).roles == ["content_admin"]  # type: ignore[union-attr]
    assert client.get("/console/admin").status_code == 403  # the change applies to the running session at once


def test_the_service_refuses_any_change_that_leaves_no_active_admin(session: Session) -> None:
    now = datetime.now(UTC)
    session.execute(update(StaffUser).values(active=False))  # rolled back after the test
    only = service.create(session, email=email(), password=NEW_PASSWORD, roles=["admin"], now=now)
    helper = service.create(session, email=email(), password=NEW_PASSWORD, roles=["rep"], now=now)
    with pytest.raises(Conflict, match="last active admin"):
        service.update(session, only, roles=["rep"], now=now, actor_id=only.id)
    with pytest.raises(Conflict, match="last active admin"):
        service.update(session, only, active=False, now=now, actor_id=helper.id)  # e.g. from the CLI
    with pytest.raises(InvalidInput, match="deactivate your own account"):
        service.update(session, only, active=False, now=now, actor_id=only.id)
    assert only.roles == ["admin"] and only.active
    service.update(session, only, roles=["admin", "rep"], territory="x", now=now, actor_id=only.id)  # still admin
    service.update(session, helper, roles=["admin"], now=now, actor_id=only.id)
    service.update(session, only, roles=["rep"], now=now, actor_id=only.id)  # now someone else is admin
    assert only.roles == ["rep"]
    inactive_admin = service.create(session, email=email(), password=NEW_PASSWORD, roles=["admin"], now=now)
    service.update(session, inactive_admin, active=False, now=now, actor_id=helper.id)
    with pytest.raises(Conflict, match="last active admin"):
        service.update(session, helper, active=False, now=now, actor_id=only.id)
