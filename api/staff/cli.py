"""``concierge staff create|list|set-password``: accounts for the consoles (the first admin, too)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from api.cli import open_sessions
from api.clock import SystemClock
from api.db import unit_of_work
from api.errors import ConciergeError
from api.settings import Settings
from api.staff import service
from api.staff.models import StaffRole

PASSWORD_ENV = "CONCIERGE_STAFF_PASSWORD"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    staff = sub.add_parser("staff", help="staff accounts for the consoles")
    ssub = staff.add_subparsers(dest="staff_command", required=True)
    create = ssub.add_parser("create", help="create a staff user")
    create.add_argument("--email", required=True)
    create.add_argument("--role", action="append", required=True, choices=list(StaffRole),
                        help="repeat for several roles")
    create.add_argument("--name")
    create.add_argument("--territory")
    create.add_argument("--password-stdin", action="store_true",
                        help=f"read the password from stdin (else ${PASSWORD_ENV}, else a prompt)")
    create.set_defaults(func=_create)
    lst = ssub.add_parser("list", help="list staff users")
    lst.set_defaults(func=_list)
    pw = ssub.add_parser("set-password", help="set a staff user's password (logs them out everywhere)")
    pw.add_argument("--email", required=True)
    pw.add_argument("--password-stdin", action="store_true")
    pw.set_defaults(func=_set_password)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise ConciergeError("the two passwords differ")
    return first


def _create(args: argparse.Namespace) -> int:
    try:
        password = _password(args)
        factory = open_sessions(Settings())
        with unit_of_work(factory) as session:
            user = service.create(session, email=args.email, password=password, roles=args.role, name=args.name,
                                  territory=args.territory, now=SystemClock().now())
            print(f"created {user.email} ({', '.join(user.roles)}) id={user.id}")
    except ConciergeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _list(args: argparse.Namespace) -> int:
    factory = open_sessions(Settings())
    with unit_of_work(factory) as session:
        for u in service.list_users(session):
            flags = ("" if u.active else " inactive") + (" 2fa" if u.totp_secret else "")
            print(f"{u.email}\t{','.join(u.roles)}\t{u.territory or '-'}{flags}")
    return 0


def _set_password(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from api.staff.models import StaffUser

    try:
        password = _password(args)
        factory = open_sessions(Settings())
        with unit_of_work(factory) as session:
            user = session.execute(select(StaffUser).where(
                StaffUser.email == service.normalise_email(args.email))).scalar_one_or_none()
            if user is None:
                print(f"error: no staff user {args.email}", file=sys.stderr)
                return 2
            service.set_password(session, user, password, now=SystemClock().now(), actor_id=None)
            print(f"password set for {user.email}; their sessions were logged out")
    except ConciergeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0
