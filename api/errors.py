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
