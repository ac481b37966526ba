"""AE recall measured live: a blinded review queue over real inbound traffic.

Every message the screen flags, plus a random share (``ae_review_sample_rate``, default 2 %) of
the messages it does not flag, goes to a review queue. A safety reviewer sees the message text
only — not whether the screen flagged it, not its score, not whether a case exists — and labels
it AE / not AE. From the labels of the last 90 days:

- precision = reviewed flagged messages labelled AE / reviewed flagged messages (Wilson 95 % CI);
- recall = TP / (TP + FN) over all traffic, where TP is estimated from the flagged share labelled
  AE × the flagged count, and FN from the unflagged sampled share labelled AE × the unflagged
  volume (Σ 1 / sampling rate over the unflagged samples). Its 95 % interval combines a Wilson
  interval for each share at 97.5 % (Bonferroni: both hold together with ≥ 95 % probability),
  taking the pessimistic end of each for the lower bound.

When the recall lower bound is below ``ae_review_recall_floor`` (0.95) an SLA alert (team
safety) is raised, at most once a day. Sampling is deterministic (a hash of the message id), so
a re-run of a turn never samples twice or differently. Services flush, never commit.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation, Message
from api.errors import Conflict, InvalidInput, NotFound
from api.safety.models import AeReviewSample, ReviewLabel, ReviewReason

WINDOW_DAYS = 90
DEFAULT_RATE = 0.02
DEFAULT_FLOOR = 0.95
Z95 = 1.959964  # two-sided 95 %
Z975 = 2.241403  # two-sided 97.5 %: two intervals that hold together with >= 95 %
ALERT_SUBJECT = "ae_screen"
ALERT_KIND = "recall_low"
MAX_QUEUE = 200


def drawn(message_id: int, rate: float) -> bool:
    """Whether an unflagged message is drawn for review (deterministic in the message id)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(f"ae-review:{message_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def sample(session: Session, *, conversation: Conversation, message: Message, flagged: bool, rate: float,
           now: datetime) -> AeReviewSample | None:
    """Put ``message`` in the review queue when flagged, or when drawn at ``rate``; None otherwise."""
    if not (0.0 <= rate <= 1.0):
        raise InvalidInput(f"the review sampling rate must be between 0 and 1, not {rate!r}")
    if not flagged and not drawn(message.id, rate):
        return None
    existing = session.execute(
        select(AeReviewSample).where(AeReviewSample.message_id == message.id)).scalar_one_or_none()
    if existing is not None:
        return existing
    row = AeReviewSample(
        message_id=message.id, conversation_id=conversation.id, channel=conversation.channel,
        reason=ReviewReason.flagged if flagged else ReviewReason.random, screen_flagged=flagged,
        sample_rate=1.0 if flagged else rate, sampled_at=now,
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class BlindItem:
    """What a reviewer sees: the message and nothing of the screen's verdict."""

    sample_id: str
    text: str
    channel: str
    received_at: datetime


def _blind_order(sample_id: str) -> str:
    return hashlib.sha256(f"blind:{sample_id}".encode()).hexdigest()


def queue(session: Session, *, limit: int = 50) -> list[BlindItem]:
    """Unreviewed samples, flagged and random mixed in an order that says nothing about either."""
    rows = session.execute(
        select(AeReviewSample.id, AeReviewSample.channel, Message.body, Message.created_at)
        .join(Message, Message.id == AeReviewSample.message_id)
        .where(AeReviewSample.label.is_(None))
        # newest first: labels inside the 90-day window are the ones the figures use
        .order_by(AeReviewSample.sampled_at.desc())
        .limit(MAX_QUEUE)
    ).all()
    items = [BlindItem(r.id, r.body, r.channel, r.created_at) for r in rows]
    items.sort(key=lambda i: _blind_order(i.sample_id))
    return items[: max(0, min(limit, MAX_QUEUE))]


def label(session: Session, sample_id: str, *, verdict: str, reviewer_id: str, now: datetime) -> AeReviewSample:
    """Record a reviewer's AE / not-AE label (once: a second label is a Conflict)."""
    try:
        value = ReviewLabel(verdict)
    except ValueError as exc:
        raise InvalidInput(f"the label must be 'ae' or 'not_ae', not {verdict!r}") from exc
    row = session.get(AeReviewSample, sample_id)
    if row is None:
        raise NotFound("review sample not found")
    if row.label is not None:
        raise Conflict("this message has already been reviewed")
    row.label = value
    row.reviewer_id = reviewer_id
    row.reviewed_at = now
    session.flush()
    audit.record(session, action="ae_review.labelled", subject_type="ae_review_sample", subject_id=row.id,
                 actor_type="staff", actor_id=reviewer_id, data={"label": value}, at=now)
    return row


# ---------------------------------------------------------------- statistics


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when there is no data."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Interval:
    point: float | None
    low: float
    high: float


@dataclass(frozen=True)
class LiveMetrics:
    window_days: int
    since: datetime
    flagged: int             # flagged messages sampled (all of them)
    flagged_reviewed: int
    true_positive: int       # flagged, reviewed AE
    false_positive: int      # flagged, reviewed not AE
    unflagged_sampled: int
    unflagged_reviewed: int
    false_negative: int      # unflagged, reviewed AE
    unflagged_volume: float  # estimated unflagged inbound messages in the window
    precision: Interval
    recall: Interval
    recall_floor: float

    @property
    def enough_reviews(self) -> bool:
        return self.flagged_reviewed > 0 and self.unflagged_reviewed > 0

    @property
    def below_floor(self) -> bool:
        return self.enough_reviews and self.recall.low < self.recall_floor


def metrics(session: Session, *, now: datetime, days: int = WINDOW_DAYS,
            floor: float = DEFAULT_FLOOR) -> LiveMetrics:
    since = now - timedelta(days=days)
    rows = session.execute(
        select(AeReviewSample.screen_flagged, AeReviewSample.label, func.count(),
               func.sum(1.0 / AeReviewSample.sample_rate))
        .where(AeReviewSample.sampled_at >= since)
        .group_by(AeReviewSample.screen_flagged, AeReviewSample.label)
    ).all()
    flagged = tp = fp = unflagged = fn = tn = 0
    volume = 0.0
    for is_flagged, verdict, count, weight in rows:
        if is_flagged:
            flagged += count
            tp += count if verdict == ReviewLabel.ae else 0
            fp += count if verdict == ReviewLabel.not_ae else 0
        else:
            unflagged += count
            volume += float(weight or 0.0)
            fn += count if verdict == ReviewLabel.ae else 0
            tn += count if verdict == ReviewLabel.not_ae else 0
    flagged_reviewed = tp + fp
    unflagged_reviewed = fn + tn
    p_lo, p_hi = wilson(tp, flagged_reviewed)
    precision = Interval(tp / flagged_reviewed if flagged_reviewed else None, p_lo, p_hi)
    # Recall over all traffic: true AEs the screen caught vs. those it let through.
    f_lo, f_hi = wilson(tp, flagged_reviewed, Z975)
    u_lo, u_hi = wilson(fn, unflagged_reviewed, Z975)
    caught_lo, caught_hi = f_lo * flagged, f_hi * flagged
    missed_lo, missed_hi = u_lo * volume, u_hi * volume
    point: float | None = None
    if flagged_reviewed and unflagged_reviewed:
        caught = tp / flagged_reviewed * flagged
        missed = fn / unflagged_reviewed * volume
        point = caught / (caught + missed) if caught + missed > 0 else None
    r_lo = caught_lo / (caught_lo + missed_hi) if caught_lo + missed_hi > 0 else 0.0
    r_hi = caught_hi / (caught_hi + missed_lo) if caught_hi + missed_lo > 0 else 1.0
    return LiveMetrics(
        window_days=days, since=since, flagged=flagged, flagged_reviewed=flagged_reviewed, true_positive=tp,
        false_positive=fp, unflagged_sampled=unflagged, unflagged_reviewed=unflagged_reviewed, false_negative=fn,
        unflagged_volume=volume, precision=precision, recall=Interval(point, r_lo, r_hi), recall_floor=floor,
    )


def check_recall_alert(session: Session, *, now: datetime, floor: float = DEFAULT_FLOOR) -> LiveMetrics:
    """Compute the live metrics and raise the day's recall alert when the lower bound is too low."""
    from api.sla.models import SlaAlert

    live = metrics(session, now=now, floor=floor)
    if not live.below_floor:
        return live
    day = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    exists = session.execute(select(SlaAlert.id).where(
        SlaAlert.subject_type == ALERT_SUBJECT, SlaAlert.subject_id == "recall", SlaAlert.kind == ALERT_KIND,
        SlaAlert.due_at == day)).first()
    if exists is None:
        alert = SlaAlert(subject_type=ALERT_SUBJECT, subject_id="recall", reference="AE-SCREEN-RECALL",
                         kind=ALERT_KIND, team="safety", due_at=day, created_at=now, attempts=0)
        session.add(alert)
        session.flush()
        audit.record(session, action="ae_review.recall_alert", subject_type="sla_alert", subject_id=str(alert.id),
                     data={"recall_low": round(live.recall.low, 4), "floor": floor,
                           "flagged_reviewed": live.flagged_reviewed,
                           "unflagged_reviewed": live.unflagged_reviewed}, at=now)
    return live
