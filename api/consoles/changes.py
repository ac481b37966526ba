"""One staff change in its own transaction, with a refusal audited in a separate one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from api.db import unit_of_work
from api.errors import ConciergeError, NotFound
from api.safety import review
from api.staff.service import StaffIdentity
from api.state import AppState

T = TypeVar("T")


def audited_change(state: AppState, ident: StaffIdentity, *, subject_type: str, subject_id: str, action: str,
                   fn: Callable[[Session], T]) -> T:
    """Run ``fn`` in its own transaction; a refusal (not a 404) is audited, then re-raised."""
    try:
        with unit_of_work(state.session_factory) as session:
            return fn(session)
    except ConciergeError as exc:
        if not isinstance(exc, NotFound):
            with unit_of_work(state.session_factory) as session:
                review.record_refused(session, subject_type=subject_type, subject_id=subject_id, action=action,
                                      staff_id=ident.id, code=exc.code, message=exc.message, now=state.clock.now())
        raise
