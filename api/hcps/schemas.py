"""Response shapes of the engagement-profile API (``/api/hcps/{id}/profile`` and ``/timeline``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ProfileRead(BaseModel):
    hcp: dict[str, Any]
    channels: list[dict[str, Any]]
    preferences: dict[str, dict[str, Any]]
    consent: list[dict[str, Any]]
    open_service_requests: list[dict[str, Any]]
    handoffs: list[dict[str, Any]]
    medical_inquiries: list[dict[str, Any]]
    adverse_events: list[dict[str, Any]]
    feedback: dict[str, Any]
    viewer: dict[str, Any]
    contact_rules: dict[str, Any]


class TimelineEventRead(BaseModel):
    at: str
    kind: str
    id: str
    conversation_id: str | None
    channel: str | None
    data: dict[str, Any]


class TimelineRead(BaseModel):
    hcp_id: str
    events: list[TimelineEventRead]
    next_cursor: str | None
