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


def test_one_licence_number_on_two_phone_numbers_is_flagged_before_either_is_verified(
        logged_in: LoggedIn, engine: Engine) -> None:
    import uuid

    from api.hcps.verification import licence_key, list_pending

    digits = str(uuid.uuid4().int)[:8]
    now = datetime.now(UTC)
    with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as s:
        first = Hcp(name="Dr Iris Vale", licence_id=f"GMC {digits}", country="GB",
                    verification_status=VerificationStatus.pending, created_at=now)
        second = Hcp(name="Dr I. Vale", licence_id=f"gmc-{digits}", country="GB",
                     verification_status=VerificationStatus.pending, created_at=now)
        alone = Hcp(name="Dr Otto Lind", licence_id=f"GMC {digits[::-1]}9", country="GB",
                    verification_status=VerificationStatus.pending, created_at=now)
        s.add_all([first, second, alone])
    assert licence_key(f"GMC {digits}") == licence_key(f"gmc-{digits}")
    with sessionmaker(bind=engine)() as s:
        pending = {p.hcp_id: p for p in list_pending(s)}
    assert pending[first.id].same_licence == ["Dr I. Vale (pending)"]
    assert pending[second.id].same_licence == ["Dr Iris Vale (pending)"]
    assert pending[alone.id].same_licence == []
    client, _, _ = logged_in("admin")
    page = client.get("/console/admin/verifications").text
    assert page.count('data-testid="same-licence"') >= 2 and "check before verifying" in page
    assert 'data-confirm="Verify this HCP?' in page
