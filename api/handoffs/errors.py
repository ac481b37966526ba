"""Errors of the handoff workflow (mapped to HTTP by the project's exception tree)."""

from __future__ import annotations

from api.errors import Conflict, Forbidden, InvalidInput


class AlreadyClaimed(Conflict):
    """Somebody else has the handoff (or it is no longer in the queue)."""

    code = "already_claimed"


class NotHolder(Forbidden):
    """Only the staff member who claimed the handoff may act on the conversation."""

    code = "not_holder"


class NotClaimed(Conflict):
    """The action needs the handoff claimed first."""

    code = "not_claimed"


class ReplyBlocked(InvalidInput):
    """The staff reply screen found something that may not go to the HCP; ``detail`` carries the
    findings, whether they may be overridden, and the approved content that fits."""

    code = "reply_blocked"


class AtCapacity(Conflict):
    """Auto-assignment is on and the staff member already has as many open conversations as allowed."""

    code = "at_capacity"


class NotOffered(Conflict):
    """The handoff is not (or no longer) offered to this staff member."""

    code = "not_offered"
