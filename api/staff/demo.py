"""Demo staff accounts for ``make run``: one per role, created only when there are no staff users.

Passwords are random per database and written to a 0600 file under the var directory, never
printed to the terminal or a log.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy import func, select

from api.clock import SystemClock
from api.db import make_engine, make_session_factory, unit_of_work
from api.settings import Settings
from api.staff import service
from api.staff.models import StaffRole, StaffUser

DEMO_DOMAIN = "demo.halcyon.example"
DEMO_FILE = "demo-staff.txt"


def ensure_demo_staff(settings: Settings) -> Path | None:
    """Create the demo accounts on an empty staff table; returns the credentials file if it exists."""
    target = settings.var_dir / DEMO_FILE
    engine = make_engine(settings.database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            if session.execute(select(func.count()).select_from(StaffUser)).scalar_one():
                return target if target.exists() else None
            now = SystemClock().now()
            lines = ["# Demo console logins for this database (created by `make run`). Keep private.\n"]
            for role in StaffRole:
                password = secrets.token_urlsafe(12)
                email = f"{role.value.replace('_', '-')}@{DEMO_DOMAIN}"
                service.create(session, email=email, password=password, roles=[role.value],
                               name=f"Demo {role.value.replace('_', ' ')}", territory=None, now=now)
                lines.append(f"{role.value:<16} {email:<40} {password}\n")
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.writelines(lines)
    finally:
        engine.dispose()
    return target
