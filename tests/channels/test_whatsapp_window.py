"""The WhatsApp 24-hour window is decided in one place (api.channels.whatsapp.service): when a staff
message becomes business-initiated, and in which form a queued message may go at send time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from api.channels.whatsapp import service as wa
from api.channels.whatsapp.models import WhatsappSend
from api.conversations import service as conversations
from api.conversations.models import Conversation, Message
from api.errors import InvalidInput
from tests.channels.conftest import new_number

NOW = datetime(2026, 4, 14, 9, 30, tzinfo=UTC)
SID = "HX" + "7" * 32


def _whatsapp(session: Session, hours_since_hcp_wrote: float) -> Conversation:
    conv = wa.conversation_for(session, new_number(), now=NOW, market="US")
    conv.last_inbound_at = NOW - timedelta(hours=hours_since_hcp_wrote)
    return conv


def _staff_message(session: Session, conv: Conversation) -> int:
    return conversations.add_outbound(session, conv, text="Your literature request is done.", now=NOW,
                                      sender_type="staff", sender_id="s-1").id


def test_inside_the_window_a_staff_message_stays_a_reply(session: Session) -> None:
    conv = _whatsapp(session, hours_since_hcp_wrote=23)
    msg_id = _staff_message(session, conv)
    row = session.get(Message, msg_id)
    assert wa.business_initiated_if_window_closed(session, conv, row, purpose="request-update",
                                                  variables={"1": "R-9"}, now=NOW) is None
    assert session.get(WhatsappSend, msg_id) is None


def test_after_the_window_it_carries_its_purpose_and_template_variables(session: Session) -> None:
    conv = _whatsapp(session, hours_since_hcp_wrote=25)
    row = session.get(Message, _staff_message(session, conv))
    assert wa.business_initiated_if_window_closed(session, conv, row, purpose="request-update",
                                                  variables={"1": "R-9"}, now=NOW) == "request-update"
    send = session.get(WhatsappSend, row.id)
    assert send is not None and (send.purpose, send.content_variables) == ("request-update", {"1": "R-9"})


def test_web_chat_has_no_window(session: Session) -> None:
    conv = conversations.create_webchat(session, now=NOW, market="US")[0]
    row = session.get(Message, _staff_message(session, conv))
    assert wa.business_initiated_if_window_closed(session, conv, row, purpose="request-update",
                                                  variables=None, now=NOW + timedelta(days=30)) is None


def test_an_unknown_purpose_is_refused_outside_the_window(session: Session) -> None:
    conv = _whatsapp(session, hours_since_hcp_wrote=48)
    row = session.get(Message, _staff_message(session, conv))
    with pytest.raises(InvalidInput, match="unknown WhatsApp purpose"):
        wa.business_initiated_if_window_closed(session, conv, row, purpose="newsletter", variables=None, now=NOW)


def test_at_send_time_free_form_inside_template_or_held_outside(session: Session) -> None:
    inside, outside = _whatsapp(session, 2), _whatsapp(session, 30)
    templates = {"request-update": SID}
    assert wa.send_form(inside, purpose=None, templates=templates, now=NOW) == wa.SendForm()
    assert wa.send_form(outside, purpose="request-update", templates=templates, now=NOW) == wa.SendForm(SID)
    held = wa.send_form(outside, purpose=None, templates=templates, now=NOW)
    assert held.template_sid is None and held.held_reason is not None
    assert "24-hour window" in held.held_reason and "free-form reply" in held.held_reason
