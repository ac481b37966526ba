"""Fatigue guard: how often, and when, the company may start a conversation with an HCP.

Applies to *business-initiated* messages only — WhatsApp sends that name a purpose (a template
outside the 24-hour window, a medical answer or handoff reply sent after the HCP went quiet, a
request update). A reply to the HCP's own message is never capped or delayed.

- Frequency cap: at most N business-initiated messages per rolling window per HCP (all their
  conversations), from their stated ``frequency`` preference, else the company default
  (``CONCIERGE_FATIGUE_MAX_MESSAGES`` per ``CONCIERGE_FATIGUE_WINDOW_DAYS``). A medical-inquiry
  answer is exempt from the cap (the HCP asked for it and Medical owes it) but counts towards it.
- Quiet hours (``CONCIERGE_QUIET_HOURS``) in the HCP's local time: the market's time zone
  (``CONCIERGE_MARKET_TIMEZONES``), else ``CONCIERGE_STAFF_TIMEZONE``.

A message that may not go now is *deferred*, not dropped: its outbox row waits (status
``deferred``) until the earliest time it may go, is audited once per decision, then goes back
to the queue where every check (consent, gate, window, this guard) runs again. Deferred rows do
not block the conversation's other messages (replies keep flowing).

Surveys are questions inside the HCP's own conversation (replies), so this guard does not delay
them; their caps live where they are asked: NPS at most once per 90 days per profile
(``feedback.service.nps_due``), CSAT once per service request and once per closed handoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.channels.whatsapp.models import WhatsappSend
from api.conversations.models import Conversation, OutboxItem, OutboxStatus
from api.hcps.models import Hcp
from api.settings import Settings
from api.timewindows import parse_quiet_hours, parse_timezone
from feedback.models import Preference, PreferenceName

DEFERRED = "deferred"  # outbox status: waiting for the fatigue guard; next_attempt_at says until when
CAP_EXEMPT_PURPOSES = frozenset({"medical-inquiry-answered"})

DEFAULT_MARKET_TIMEZONES: dict[str, str] = {
    "GB": "Europe/London", "IE": "Europe/Dublin", "FR": "Europe/Paris", "DE": "Europe/Berlin",
    "ES": "Europe/Madrid", "IT": "Europe/Rome", "NL": "Europe/Amsterdam", "PT": "Europe/Lisbon",
    "US": "America/New_York", "CA": "America/Toronto", "AU": "Australia/Sydney", "JP": "Asia/Tokyo",
}


@dataclass(frozen=True)
class Cap:
    messages: int
    window: timedelta


@dataclass(frozen=True)
class FatiguePolicy:
    max_messages: int = 3
    window_days: int = 7
    quiet_hours: str = "21:00-08:00"
    market_timezones: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MARKET_TIMEZONES))
    default_timezone: str = "Europe/London"

    @classmethod
    def from_settings(cls, settings: Settings) -> FatiguePolicy:
        return cls(max_messages=settings.fatigue_max_messages, window_days=settings.fatigue_window_days,
                   quiet_hours=settings.quiet_hours,
                   market_timezones={**DEFAULT_MARKET_TIMEZONES, **settings.market_timezones},
                   default_timezone=settings.staff_timezone)

    @property
    def default_cap(self) -> Cap:
        return Cap(self.max_messages, timedelta(days=self.window_days))

    def cap_for(self, frequency: str | None) -> Cap:
        """The HCP's stated frequency, else the company default."""
        stated = {"daily": Cap(1, timedelta(days=1)), "weekly": Cap(1, timedelta(days=7)),
                  "monthly": Cap(1, timedelta(days=30)), "quarterly": Cap(1, timedelta(days=90)),
                  "less_often": Cap(max(1, self.max_messages // 2), timedelta(days=self.window_days))}
        return stated.get(frequency or "", self.default_cap)

    def timezone_for(self, market: str | None) -> ZoneInfo:
        return parse_timezone(self.market_timezones.get((market or "").upper(), self.default_timezone))


# ---------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Decision:
    allowed: bool
    until: datetime | None = None   # earliest time it may go (when not allowed)
    rule: str | None = None          # frequency_cap | quiet_hours
    reason: str | None = None


def _conversation_ids(session: Session, conv: Conversation) -> list[str]:
    if conv.hcp_id is None:
        return [conv.id]
    return list(session.execute(select(Conversation.id).where(Conversation.hcp_id == conv.hcp_id)).scalars())


def stated_frequency(session: Session, conv: Conversation) -> str | None:
    """The HCP's own frequency preference (their verified profile first, else this address's)."""
    subjects = [f"hcp:{conv.hcp_id}"] if conv.hcp_id else []
    subjects.append(f"{conv.channel}:{conv.address or 'conversation:' + conv.id}")
    rows = session.execute(select(Preference.subject, Preference.value).where(
        Preference.name == PreferenceName.frequency, Preference.subject.in_(subjects))).all()
    found = dict(rows)
    for subject in subjects:
        if subject in found:
            return str(found[subject])
    return None


def sent_times(session: Session, conv: Conversation, since: datetime) -> list[datetime]:
    """When business-initiated messages reached this HCP (any conversation) since ``since``."""
    rows = session.execute(
        select(OutboxItem.sent_at).join(WhatsappSend, WhatsappSend.message_id == OutboxItem.message_id)
        .where(OutboxItem.conversation_id.in_(_conversation_ids(session, conv)),
               OutboxItem.status == OutboxStatus.sent, WhatsappSend.purpose.is_not(None),
               OutboxItem.sent_at >= since)
        .order_by(OutboxItem.sent_at)).scalars()
    return [t for t in rows if t is not None]


def quiet_until(policy: FatiguePolicy, market: str | None, now: datetime) -> datetime | None:
    """The end of the quiet period ``now`` falls in (UTC), or None outside quiet hours."""
    window = parse_quiet_hours(policy.quiet_hours)
    if window is None:
        return None
    start, end = window
    tz = policy.timezone_for(market)
    local = now.astimezone(tz)
    t = local.time()
    quiet = (start <= t or t < end) if start > end else (start <= t < end)
    if not quiet:
        return None
    end_day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


def decide(session: Session, conv: Conversation, *, purpose: str | None, now: datetime,
           policy: FatiguePolicy) -> Decision:
    """May this business-initiated message go to the HCP now? (``purpose`` None: a reply — always.)"""
    if purpose is None:
        return Decision(True)
    market = conv.market
    if market is None and conv.hcp_id is not None:
        hcp = session.get(Hcp, conv.hcp_id)
        market = hcp.country if hcp is not None else None
    if purpose not in CAP_EXEMPT_PURPOSES:
        frequency = stated_frequency(session, conv)
        cap = policy.cap_for(frequency)
        recent = sent_times(session, conv, now - cap.window)
        if len(recent) >= cap.messages:
            until = recent[len(recent) - cap.messages] + cap.window
            source = f"the HCP's stated frequency ({frequency})" if frequency and policy.cap_for(frequency) != \
                policy.default_cap else "the company default"
            return Decision(False, until, "frequency_cap",
                            f"{len(recent)} business-initiated message(s) in the last {cap.window.days} day(s); "
                            f"{source} allows {cap.messages}")
    quiet_end = quiet_until(policy, market, now)
    if quiet_end is not None:
        return Decision(False, quiet_end, "quiet_hours",
                        f"quiet hours {policy.quiet_hours} in {policy.timezone_for(market).key}")
    return Decision(True)


# ---------------------------------------------------------------- the outbox side


def defer(session: Session, item: OutboxItem, *, decision: Decision, purpose: str | None, now: datetime) -> None:
    """Park the row until ``decision.until``; audited (no personal data: ids, rule, times)."""
    assert decision.until is not None
    item.status = DEFERRED
    item.next_attempt_at = decision.until
    item.last_error = decision.reason
    session.flush()
    audit.record(session, action="outbox.deferred", subject_type="message", subject_id=str(item.message_id),
                 data={"conversation_id": item.conversation_id, "channel": item.channel, "purpose": purpose,
                       "rule": decision.rule, "reason": decision.reason, "until": decision.until.isoformat()},
                 at=now)


def _due_clause(now: datetime, channel: str | None) -> list[ColumnElement[bool]]:
    clauses = [OutboxItem.status == DEFERRED,
               or_(OutboxItem.next_attempt_at.is_(None), OutboxItem.next_attempt_at <= now)]
    if channel is not None:
        clauses.append(OutboxItem.channel == channel)
    return clauses


def any_due(session: Session, *, now: datetime, channel: str | None = None) -> bool:
    return session.execute(select(OutboxItem.id).where(*_due_clause(now, channel)).limit(1)).first() is not None


def release_due(session: Session, *, now: datetime, channel: str | None = None) -> int:
    """Deferred rows whose time has come go back to the queue (every check runs again there)."""
    due = session.execute(select(OutboxItem.id, OutboxItem.message_id, OutboxItem.conversation_id)
                          .where(*_due_clause(now, channel))).all()
    for row_id, message_id, conversation_id in due:
        released = session.execute(update(OutboxItem).where(OutboxItem.id == row_id, OutboxItem.status == DEFERRED)
                                   .values(status=OutboxStatus.pending, next_attempt_at=now, last_error=None)
                                   .execution_options(synchronize_session=False))
        if released.rowcount:  # type: ignore[attr-defined]
            audit.record(session, action="outbox.released", subject_type="message", subject_id=str(message_id),
                         data={"conversation_id": conversation_id}, at=now)
    session.flush()
    return len(due)

