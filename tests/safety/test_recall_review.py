"""Live AE recall: the blinded review queue, its statistics and the recall alert (service level)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Conflict, InvalidInput, NotFound
from api.safety import recall
from api.safety.models import AeReviewSample
from api.safety.screen import ScreenResult
from api.safety.service import apply
from api.sla.models import SlaAlert
from tests.safety.conftest import T0, MakeConversation, MakeMessage


def test_wilson_interval_matches_known_values() -> None:
    lo, hi = recall.wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert recall.wilson(0, 0) == (0.0, 1.0)
    lo0, hi0 = recall.wilson(0, 50)
    assert lo0 == 0.0 and 0.05 < hi0 < 0.08


def test_drawing_is_deterministic_and_close_to_the_rate() -> None:
    picks = [recall.drawn(i, 0.02) for i in range(20_000)]
    assert picks == [recall.drawn(i, 0.02) for i in range(20_000)]
    assert 0.015 < sum(picks) / len(picks) < 0.025
    assert not recall.drawn(7, 0.0) and recall.drawn(7, 1.0)


def test_every_flagged_message_and_a_drawn_share_of_the_rest_are_queued(
    session: Session, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    flagged = make_message(conv, "pt on glucorel vomiting for a week")
    apply(session, conversation=conv, message=flagged,
          result=ScreenResult(adverse_event=True, ae_categories=("side_effect",)), now=T0, review_rate=0.0)
    plain = make_message(conv, "what is the storage temperature")
    apply(session, conversation=conv, message=plain, result=ScreenResult(), now=T0, review_rate=1.0)
    skipped = make_message(conv, "thanks")
    apply(session, conversation=conv, message=skipped, result=ScreenResult(), now=T0, review_rate=0.0)
    rows = {r.message_id: r for r in session.execute(
        select(AeReviewSample).where(AeReviewSample.conversation_id == conv.id)).scalars()}
    assert rows[flagged.id].screen_flagged and rows[flagged.id].sample_rate == 1.0
    assert not rows[plain.id].screen_flagged and rows[plain.id].reason == "random"
    assert skipped.id not in rows


def test_a_bad_sampling_rate_is_refused(
    session: Session, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    with pytest.raises(InvalidInput):
        recall.sample(session, conversation=conv, message=make_message(conv, "hi"), flagged=False, rate=1.5, now=T0)


def test_the_reviewer_sees_the_text_but_not_the_verdict(
    session: Session, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    msg = make_message(conv, "my patient fainted after the first respizan dose")
    recall.sample(session, conversation=conv, message=msg, flagged=True, rate=0.02, now=T0 + timedelta(days=9000))
    [item] = [i for i in recall.queue(session, limit=200) if i.text == msg.body]
    assert set(vars(item)) == {"sample_id", "text", "channel", "received_at"}


def test_labels_are_checked_and_given_once(
    session: Session, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    conv = make_conversation()
    row = recall.sample(session, conversation=conv, message=make_message(conv, "rash"), flagged=True, rate=0.02,
                        now=T0)
    assert row is not None
    with pytest.raises(InvalidInput):
        recall.label(session, row.id, verdict="maybe", reviewer_id="s1", now=T0)
    recall.label(session, row.id, verdict="ae", reviewer_id="s1", now=T0)
    with pytest.raises(Conflict):
        recall.label(session, row.id, verdict="not_ae", reviewer_id="s2", now=T0)
    with pytest.raises(NotFound):
        recall.label(session, "no-such-sample", verdict="ae", reviewer_id="s1", now=T0)


def _midnight(at: datetime) -> datetime:
    return datetime.combine(at.date(), time.min, tzinfo=at.tzinfo)


def _seed(session: Session, conv_factory: MakeConversation, msg_factory: MakeMessage, *, now_days: int,
          flagged_ae: int, flagged_not: int, unflagged_ae: int, unflagged_not: int, rate: float) -> None:
    at = T0 + timedelta(days=now_days)
    conv = conv_factory()
    plan = [(True, "ae")] * flagged_ae + [(True, "not_ae")] * flagged_not + [(False, "ae")] * unflagged_ae \
        + [(False, "not_ae")] * unflagged_not
    for i, (flagged, verdict) in enumerate(plan):
        msg = msg_factory(conv, f"seeded message {now_days}-{i}", at=at)
        row = AeReviewSample(message_id=msg.id, conversation_id=conv.id, channel="whatsapp",
                             reason="flagged" if flagged else "random", screen_flagged=flagged,
                             sample_rate=1.0 if flagged else rate, sampled_at=at)
        session.add(row)
        session.flush()
        recall.label(session, row.id, verdict=verdict, reviewer_id="reviewer", now=at)


def test_metrics_over_the_window_and_the_recall_alert(
    session: Session, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    # A window of our own, far from every other test's rows (the database is shared).
    day = 30000  # ~2108: past the review console tests' windows (2040-2048)
    now = T0 + timedelta(days=day, hours=1)
    # 40 flagged reviewed (36 AE), 100 unflagged drawn at 2 % (1 AE): ~5,000 unflagged messages.
    _seed(session, make_conversation, make_message, now_days=day, flagged_ae=36, flagged_not=4,
          unflagged_ae=1, unflagged_not=99, rate=0.02)
    live = recall.check_recall_alert(session, now=now, floor=0.95)
    assert live.flagged_reviewed == 40 and live.true_positive == 36 and live.false_negative == 1
    assert live.unflagged_volume == pytest.approx(5000.0)
    assert live.precision.point == pytest.approx(0.9)
    assert live.precision.low < 0.9 < live.precision.high
    # 36 caught vs ~50 missed (1 in 100 of 5,000): recall is poor and the alert fires.
    assert live.recall.point is not None and live.recall.point == pytest.approx(36 / (36 + 50))
    assert live.recall.low < live.recall.point < live.recall.high
    assert live.below_floor
    alerts = session.execute(select(SlaAlert).where(SlaAlert.subject_type == recall.ALERT_SUBJECT,
                                                    SlaAlert.due_at == _midnight(now))).scalars().all()
    assert len(alerts) == 1 and alerts[0].team == "safety"
    recall.check_recall_alert(session, now=now + timedelta(minutes=5), floor=0.95)
    assert len(session.execute(select(SlaAlert).where(
        SlaAlert.subject_type == recall.ALERT_SUBJECT,
        SlaAlert.due_at == _midnight(now))).scalars().all()) == 1  # once a day


def test_no_alert_when_the_lower_bound_clears_the_floor(
    session: Session, make_conversation: MakeConversation, make_message: MakeMessage
) -> None:
    day = 30300
    now = T0 + timedelta(days=day, hours=1)
    # Nearly every flagged message is an AE and none of 400 unflagged messages drawn at 50 % is.
    _seed(session, make_conversation, make_message, now_days=day, flagged_ae=300, flagged_not=2,
          unflagged_ae=0, unflagged_not=400, rate=0.5)
    live = recall.check_recall_alert(session, now=now, floor=0.95)
    assert live.recall.low >= 0.95 and not live.below_floor
    assert session.execute(select(SlaAlert).where(
        SlaAlert.subject_type == recall.ALERT_SUBJECT, SlaAlert.due_at == _midnight(now))).first() is None


def test_no_recall_estimate_and_no_alert_without_both_kinds_of_reviews(session: Session) -> None:
    live = recall.metrics(session, now=T0 + timedelta(days=20000))
    assert live.recall.point is None and not live.enough_reviews and not live.below_floor
