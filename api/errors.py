"""The project's exception tree, mapped to HTTP once in ``api.app``."""

from __future__ import annotations


class ConciergeError(Exception):
    status_code = 400
    code = "error"

    def __init__(self, message: str, *, detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NotFound(ConciergeError):
    status_code = 404
    code = "not_found"


class Forbidden(ConciergeError):
    status_code = 403
    code = "forbidden"


class Unauthorized(ConciergeError):
    status_code = 401
    code = "unauthorized"


class InvalidInput(ConciergeError):
    status_code = 422
    code = "invalid_input"


class Conflict(ConciergeError):
    status_code = 409
    code = "conflict"


class ContentGated(ConciergeError):
    """An approved-content item may not be sent to this recipient right now."""

    status_code = 409
    code = "content_gated"


class ChannelError(ConciergeError):
    status_code = 502
    code = "channel_error"


class UpstreamUnavailable(ConciergeError):
    status_code = 503
    code = "upstream_unavailable"


class RateLimited(ConciergeError):
    """Too many requests from one session or client; ``retry_after`` seconds until the next is taken."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, detail={"retry_after": max(1, round(retry_after + 0.49))})
        self.retry_after = max(1, round(retry_after + 0.49))


class DatabaseBusy(ConciergeError):
    """The database did not answer in time; nothing is acknowledged, the client sends again."""

    status_code = 503
    code = "database_busy"
