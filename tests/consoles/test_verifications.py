"""An admin confirms or rejects the registration an HCP gave the bot; the HCP is told on their channel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from api.audit.models import AuditEvent
from api.conversations import service as conversations
from api.conversations.models import Conversation
from api.db import unit_of_work
from api.hcps.models import Hcp, VerificationStatus
from api.hcps.verification import REJECTED_TEXT, VERIFIED_TEXT
from tests.consoles.conftest import StaffAccount

LoggedIn = Callable[..., tuple[TestClient, StaffAccount, str]]


def _pending_hcp_chat(engine: Engine) -> tuple[str, str, str]:
    """(hcp id, conversation id, web chat token) of an HCP whose registration waits for a decision."""
    now = datetime.now(UTC)
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        conv, token = conversations.create_webchat(s, now=now, market="GB")
        hcp = Hcp(name="Dr Ada Test", licence_id="GMC 7654321", country="GB",
                  verification_status=VerificationStatus.pending, created_at=now)
        s.add(hcp)
        s.flush()
        conv.hcp_id = hcp.id
        conv.audience = "public"
        return hcp.id, conv.id, token


def _decide(client: TestClient, csrf: str, hcp_id: str, decision: str, reason: str = "") -> int:
    res = client.post(f"/console/admin/verifications/{hcp_id}",
                      data={"csrf_token": csrf, "decision": decision, "reason": reason})
    return res.status_code


def test_admin_verifies_an_hcp_who_is_told_and_gets_hcp_content(logged_in: LoggedIn, engine: Engine) -> None:
    client, account, csrf = logged_in("admin")
    hcp_id, conv_id, token = _pending_hcp_chat(engine)
    page = client.get("/console/admin/verifications")
    assert page.status_code == 200 and f'data-hcp-id="{hcp_id}"' in page.text and "GMC 7654321" in page.text
    assert _decide(client, csrf, hcp_id, "verify") == 303
    with sessionmaker(bind=engine)() as s:
        hcp = s.get(Hcp, hcp_id)
        conv = s.get(Conversation, conv_id)
        assert hcp is not None and hcp.verification_status == "verified"
        assert conv is not None and conv.audience == "hcp"
        events = s.query(AuditEvent).filter(AuditEvent.subject_id == hcp_id, AuditEvent.action == "hcp.verified").all()
        assert len(events) == 1 and events[0].actor_id == account.id
    seen = client.get(f"/api/webchat/sessions/{token}/messages").json()["messages"]
    assert any(m["text"] == VERIFIED_TEXT for m in seen)
    # Deciding again is refused: the first decision stands.
    assert _decide(client, csrf, hcp_id, "reject", "duplicate") == 409
    assert f'data-hcp-id="{hcp_id}"' not in client.get("/console/admin/verifications").text


def test_rejecting_needs_a_reason_and_keeps_public_content_only(logged_in: LoggedIn, engine: Engine) -> None:
    client, _account, csrf = logged_in("admin")
    hcp_id, conv_id, token = _pending_hcp_chat(engine)
    assert _decide(client, csrf, hcp_id, "reject") == 422
    assert _decide(client, csrf, hcp_id, "maybe") == 422
    with sessionmaker(bind=engine)() as s:
        assert s.get(Hcp, hcp_id).verification_status == "pending"  # type: ignore[union-attr]
    assert _decide(client, csrf, hcp_id, "reject", "Licence number not on the GMC register") == 303
    with sessionmaker(bind=engine)() as s:
        assert s.get(Hcp, hcp_id).verification_status == "rejected"  # type: ignore[union-attr]
        assert s.get(Conversation, conv_id).audience == "public"  # type: ignore[union-attr]
    seen = client.get(f"/api/webchat/sessions/{token}/messages").json()["messages"]
    assert any(m["text"] == REJECTED_TEXT for m in seen)


def test_unknown_hcp_and_missing_csrf_change_nothing(logged_in: LoggedIn, engine: Engine) -> None:
    client, _account, csrf = logged_in("admin")
    assert _decide(client, csrf, "0" * 32, "verify") == 404
    hcp_id, _conv_id, _token = _pending_hcp_chat(engine)
    assert client.post(f"/console/admin/verifications/{hcp_id}", data={"decision": "verify"}).status_code == 403
    with sessionmaker(bind=engine)() as s:
        assert s.get(Hcp, hcp_id).verification_status == "pending"  # type: ignore[union-attr]
