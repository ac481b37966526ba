"""Blinded AE review in the Safety console, end to end: HCP messages go through the real worker and
``apply``; a safety reviewer labels them blind; recall / precision with 95 % intervals and the
recall alert follow."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation, Message
from api.pipeline.turn import SafetyOutcomeLike
from api.safety import recall
from api.safety.models import AeReviewSample
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.settings import Settings
from api.sla.models import SlaAlert
from tests.consoles.conftest import StaffAccount
from tests.consoles.review_fixtures import ReviewWorld, ScriptedScreen, review_world

JSON = {"accept": "application/json"}


class EverythingSampled(ScriptedScreen):
    """The scripted screen, with every unflagged message drawn for review (rate 1.0)."""

    def __call__(self, session: Session, conv: Conversation, msg: Message, now: datetime) -> SafetyOutcomeLike:
        result = self.script.get(msg.body, ScreenResult())
        outcome: SafetyOutcomeLike = apply(session, conversation=conv, message=msg, result=result, now=now,
                                           review_rate=1.0)
        return outcome


@pytest.fixture()
def world(engine: Engine, settings: Settings, make_staff: Callable[..., StaffAccount]) -> Iterator[ReviewWorld]:
    for w in review_world(engine, settings, make_staff):
        w.screen.__class__ = EverythingSampled  # the apps hold this object: same script, every message drawn
        # A window of this test's own: the database is shared with every other test.
        w.clock.set(datetime(2040, 1, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 3000))
        yield w


def _post(client: TestClient, url: str, csrf: str, body: Any) -> Any:
    return client.post(url, json=body, headers={**JSON, "x-csrf-token": csrf})


def test_a_seeded_blind_review_gives_recall_precision_and_the_alert(world: ReviewWorld) -> None:
    tag = uuid.uuid4().hex[:6]
    reports = [f"pt on cardiovex has dark urine {tag}", f"rash after respizan {tag}", f"glucorel pen leaked {tag}"]
    for text in reports:
        world.screen.script[text] = ScreenResult(adverse_event=True, ae_categories=("side_effect",), ae_score=0.9)
    quiet = [f"what is the shelf life {tag}", f"my patient says she has been dizzy since starting glucorel {tag}",
             f"thanks {tag}"]
    chat = world.chat()
    for text in [*reports, *quiet]:
        chat.say(text)

    client, _account, csrf = world.staff_client("safety")
    res = client.get("/api/staff/safety/review", params={"limit": 200}, headers=JSON)
    assert res.status_code == 200, res.text
    mine = {i["text"]: i for i in res.json()["queue"] if i["text"].endswith(tag)}
    assert set(mine) == set(reports) | set(quiet)
    # Blind: nothing in the queue says what the screen decided.
    for item in mine.values():
        assert set(item) == {"sample_id", "text", "channel", "received_at"}

    truth = {**{t: "ae" for t in reports}, quiet[0]: "not_ae", quiet[1]: "ae", quiet[2]: "not_ae"}
    truth[reports[2]] = "not_ae"  # the reviewer reads the leaking pen as no adverse event
    for text, verdict in truth.items():
        res = _post(client, f"/api/staff/safety/review/{mine[text]['sample_id']}", csrf, {"label": verdict})
        assert res.status_code == 200, res.text
    again = _post(client, f"/api/staff/safety/review/{mine[quiet[0]]['sample_id']}", csrf, {"label": "ae"})
    assert again.status_code == 409

    metrics = res.json()["metrics"]
    assert metrics["flagged_reviewed"] == 3 and metrics["true_positive"] == 2 and metrics["false_positive"] == 1
    assert metrics["unflagged_reviewed"] == 3 and metrics["false_negative"] == 1
    assert metrics["precision"]["point"] == pytest.approx(2 / 3)
    assert 0.0 <= metrics["precision"]["low"] < 2 / 3 < metrics["precision"]["high"] <= 1.0
    assert metrics["recall"]["point"] == pytest.approx(2 / 3)
    assert metrics["recall"]["low"] < 0.95 and metrics["alert"] is True
    with Session(world.engine) as s:
        day = datetime.combine(world.clock.now().date(), datetime.min.time(), tzinfo=UTC)
        alert = s.execute(select(SlaAlert).where(SlaAlert.subject_type == recall.ALERT_SUBJECT,
                                                 SlaAlert.due_at == day)).scalar_one()
        assert alert.team == "safety" and alert.kind == recall.ALERT_KIND
        labelled = s.execute(select(AeReviewSample).where(
            AeReviewSample.id.in_([i["sample_id"] for i in mine.values()]))).scalars().all()
        assert all(r.label is not None and r.reviewed_at is not None for r in labelled)

    page = client.get("/console/safety-review")
    assert page.status_code == 200
    assert "Recall" in page.text and "Precision" in page.text and 'role="alert"' in page.text
    assert tag not in page.text  # everything of this test is reviewed: nothing of it is left to show


def test_the_review_queue_is_for_the_safety_team_only(world: ReviewWorld) -> None:
    client, _account, csrf = world.staff_client("rep")
    assert client.get("/api/staff/safety/review", params={"limit": 200}, headers=JSON).status_code == 403
    assert _post(client, "/api/staff/safety/review/whatever", csrf, {"label": "ae"}).status_code == 403


def test_a_bad_label_is_a_clear_error(world: ReviewWorld) -> None:
    chat = world.chat()
    text = f"hello there {uuid.uuid4().hex[:6]}"
    chat.say(text)
    client, _account, csrf = world.staff_client("safety")
    queue = client.get("/api/staff/safety/review", params={"limit": 200}, headers=JSON).json()["queue"]
    [item] = [i for i in queue if i["text"] == text]
    res = _post(client, f"/api/staff/safety/review/{item['sample_id']}", csrf, {"label": "perhaps"})
    assert res.status_code == 422 and "'ae' or 'not_ae'" in res.text
