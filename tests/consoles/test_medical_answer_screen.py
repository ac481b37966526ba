"""A medical reviewer's free-text answer passes the same staff reply screen as an Inbox reply:
personal data the HCP did not give is refused (the draft comes back), a reason sends it (audited),
and an adverse event the reviewer mentions opens a safety case even when the answer is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from api.audit.models import AuditEvent
from api.safety.models import AdverseEvent
from api.safety.screen import ScreenResult
from api.settings import Settings
from tests.consoles.conftest import StaffAccount
from tests.consoles.review_fixtures import Chat, ReviewWorld, review_world, unique

JSON = {"accept": "application/json"}


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> Iterator[ReviewWorld]:
    yield from review_world(engine, settings, make_staff)


def _ask(world: ReviewWorld) -> tuple[Chat, str]:
    chat = world.chat()
    text = f"is there anything on cardiovex in teenagers {unique()}"
    world.screen.script[text] = ScreenResult(off_label=True, products=("cardiovex",), off_label_reasons=("population",))
    chat.say(text)
    return chat, world.inquiry_for(chat.conversation_id).id


def _answer(client: Any, inquiry_id: str, csrf: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/staff/medical/inquiries/{inquiry_id}/answer", json=body,
                       headers={**JSON, "x-csrf-token": csrf})


def _actions(world: ReviewWorld, inquiry_id: str) -> list[str]:
    with world.factory() as s:
        return list(s.execute(select(AuditEvent.action).where(AuditEvent.subject_id == inquiry_id)
                              .order_by(AuditEvent.seq)).scalars())


def test_personal_data_in_an_answer_is_refused_then_sent_with_a_reason(world: ReviewWorld) -> None:
    chat, inquiry_id = _ask(world)
    reviewer, _account, csrf = world.staff_client("medical_reviewer")
    text = "Data are limited; Professor Anneliese Brightwater (07700 900404) ran the only registry."
    refused = _answer(reviewer, inquiry_id, csrf, {"text": text})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "reply_blocked" and error["detail"]["overridable"] is True
    assert {f["kind"] for f in error["detail"]["findings"]} == {"personal_data"}
    assert world.inquiry(inquiry_id).status == "open"
    assert all(m["text"] != text for m in chat.messages())

    page = reviewer.post(f"/console/medical/{inquiry_id}/answer", data={"csrf_token": csrf, "text": text})
    assert page.status_code == 422 and "Personal data the HCP did not give" in page.text
    assert "07700 900404" in page.text  # the draft is back in the box

    sent = _answer(reviewer, inquiry_id, csrf,
                   {"text": text, "override_reason": "The professor asked us to share her registry line."})
    assert sent.status_code == 200, sent.text
    assert chat.messages()[-1]["text"] == text
    actions = _actions(world, inquiry_id)
    assert actions.count("staff_reply.blocked") == 2 and actions.count("staff_reply.override") == 1


def test_an_adverse_event_in_a_refused_answer_is_still_a_case(world: ReviewWorld) -> None:
    chat, inquiry_id = _ask(world)
    reviewer, account, csrf = world.staff_client("medical_reviewer")
    text = ("Before I answer: you said your patient developed severe muscle pain on Cardiovex; "
            "please also ring Dr Ottoline Fairweather on 07700 900515.")
    refused = _answer(reviewer, inquiry_id, csrf, {"text": text})
    assert refused.status_code == 422
    reference = refused.json()["error"]["detail"]["adverse_event_reference"]
    with world.factory() as s:
        case = s.execute(select(AdverseEvent).where(AdverseEvent.reference == reference)).scalar_one()
        assert case.source == "staff" and case.reported_by_staff_id == account.id
        assert case.conversation_id == chat.conversation_id and case.raw_text == text


def test_safety_staff_open_and_export_a_staff_reported_case_without_a_source_message(world: ReviewWorld) -> None:
    _chat, inquiry_id = _ask(world)
    reviewer, _account, csrf = world.staff_client("medical_reviewer")
    text = "Noted that your patient was hospitalised with rhabdomyolysis on Cardiovex; call 07700 900626."
    refused = _answer(reviewer, inquiry_id, csrf, {"text": text})
    assert refused.status_code == 422
    reference = refused.json()["error"]["detail"]["adverse_event_reference"]
    with world.factory() as s:
        case_id = s.execute(select(AdverseEvent.id).where(AdverseEvent.reference == reference)).scalar_one()
    safety, _acc, _csrf = world.staff_client("safety")
    page = safety.get(f"/console/safety/{case_id}")
    assert page.status_code == 200 and reference in page.text
    assert 'data-testid="staff-report"' in page.text and "rhabdomyolysis" in page.text
    detail = safety.get(f"/api/staff/safety/cases/{case_id}", headers=JSON)
    assert detail.status_code == 200 and detail.json()["source_messages"] == []
    exported = safety.get(f"/api/staff/safety/cases/{case_id}/export", headers=JSON)
    assert exported.status_code == 200 and text in exported.text
