"""``make run`` seeds one demo login per role, once, with the passwords in a private file."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from api.db import make_engine
from api.migrate import upgrade
from api.settings import Settings
from api.staff import service
from api.staff.demo import ensure_demo_staff
from api.staff.models import StaffRole, StaffUser


def test_demo_staff_are_created_once_per_empty_database(tmp_path: Path, settings: Settings) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    migrated = make_engine(url)
    upgrade(migrated)
    migrated.dispose()
    s = settings.model_copy(update={"database_url": url, "var_dir": tmp_path / "var"})
    path = ensure_demo_staff(s)
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    assert sorted(r[0] for r in rows) == sorted(StaffRole)
    engine = create_engine(url)
    with Session(engine) as session:
        role, email, password = rows[0]
        user = session.execute(select(StaffUser).where(StaffUser.email == email)).scalar_one()
        assert user.roles == [role]
        assert service.authenticate(session, email=email, password=password, totp_code=None, client=None,
                                    now=user.created_at).id == user.id
    before = path.read_text()
    assert ensure_demo_staff(s) == path and path.read_text() == before
    engine.dispose()
