"""Twilio's Messaging REST API, spoken directly over httpx (real Twilio or the loopback fake).

Failures are classified once, here: a 429 or 5xx or a network failure may be retried; a 4xx is
final. A failure after the request may have reached Twilio (read timeout, dropped connection,
5xx) is *uncertain*: the message may exist, so the dispatcher looks it up before resending.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from api.errors import ChannelError


class TwilioError(ChannelError):
    def __init__(self, message: str, *, retryable: bool, uncertain: bool, code: str | None = None,
                 http_status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.uncertain = uncertain
        self.twilio_code = code
        self.http_status = http_status
        self.retry_after = retry_after


@dataclass(frozen=True)
class SentMessage:
    sid: str
    status: str


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_from(response: httpx.Response) -> TwilioError:
    code: str | None = None
    message = response.text[:300]
    try:
        data = response.json()
        if isinstance(data, dict):
            code = str(data["code"]) if data.get("code") is not None else None
            message = str(data.get("message") or message)
    except ValueError:
        pass
    status = response.status_code
    retryable = status == 429 or status >= 500
    return TwilioError(f"twilio {status}: {message}", retryable=retryable, uncertain=status >= 500,
                       code=code, http_status=status, retry_after=_retry_after(response))


class TwilioClient:
    def __init__(self, *, api_url: str, account_sid: str, auth_token: str, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.account_sid = account_sid
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"), auth=(account_sid, auth_token), timeout=timeout,
            transport=transport, headers={"User-Agent": "hcp-concierge"},
        )

    @property
    def _messages_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TwilioError(f"twilio unreachable: {exc!r}", retryable=True, uncertain=False) from exc
        except httpx.TransportError as exc:  # read/write timeout, dropped connection: may have landed
            raise TwilioError(f"twilio no answer: {exc!r}", retryable=True, uncertain=True) from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    async def create_message(self, *, to: str, from_: str, body: str | None = None,
                             content_sid: str | None = None, content_variables: dict[str, str] | None = None,
                             status_callback: str | None = None) -> SentMessage:
        form: dict[str, str] = {"To": to, "From": from_}
        if content_sid:
            form["ContentSid"] = content_sid
            if content_variables:
                form["ContentVariables"] = json.dumps(content_variables, ensure_ascii=False)
        else:
            form["Body"] = body or ""
        if status_callback:
            form["StatusCallback"] = status_callback
        response = await self._request("POST", self._messages_path, data=form)
        try:
            data = response.json()
            return SentMessage(sid=str(data["sid"]), status=str(data.get("status") or "queued"))
        except (ValueError, KeyError, TypeError) as exc:
            raise TwilioError("twilio answered without a message sid", retryable=True, uncertain=True) from exc

    async def find_sent(self, *, to: str, from_: str, since: datetime, body: str | None,
                        exclude: set[str]) -> str | None:
        """A message we may already have created: same recipient, created since ``since``."""
        params = {"To": to, "From": from_, "DateSent>": (since - timedelta(days=1)).date().isoformat(),
                  "PageSize": "50"}
        response = await self._request("GET", self._messages_path, params=params)
        floor = since.replace(microsecond=0) - timedelta(seconds=1)
        for m in response.json().get("messages", []):
            sid = str(m.get("sid"))
            if sid in exclude:
                continue
            try:
                created = parsedate_to_datetime(str(m.get("date_created")))
            except (TypeError, ValueError):
                continue
            if created < floor:
                continue
            if body is None or m.get("body") == body:
                return sid
        return None

    async def aclose(self) -> None:
        await self._http.aclose()
