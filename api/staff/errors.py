"""Errors of the staff domain."""

from __future__ import annotations

from api.errors import ConciergeError, Unauthorized


class LoginFailed(Unauthorized):
    code = "login_failed"


class TotpRequired(Unauthorized):
    """Password was right; the account also needs a code from its authenticator."""

    code = "totp_required"


class LoginThrottled(ConciergeError):
    status_code = 429
    code = "login_throttled"


class CsrfFailed(ConciergeError):
    status_code = 403
    code = "csrf_failed"
