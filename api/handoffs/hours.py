"""When staff answer: opening hours in a named timezone, and the next time a human is at work.

The spec is what an operator writes in ``CONCIERGE_STAFF_HOURS``, read by
``api.timewindows.parse_windows`` (e.g. ``Mon-Fri 08:00-18:00; Sat 09:00-12:00``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from api.timewindows import Window, parse_timezone, parse_windows

if TYPE_CHECKING:
    from api.settings import Settings

@dataclass(frozen=True)
class StaffHours:
    windows: tuple[Window, ...]
    tz: ZoneInfo
    spec: str

    @classmethod
    def parse(cls, spec: str, timezone: str) -> StaffHours:
        return cls(parse_windows(spec), parse_timezone(timezone), " ".join(spec.split()))

    def _local(self, d: date, minutes: int) -> datetime:
        if minutes >= 24 * 60:
            return datetime.combine(d + timedelta(days=1), time(0), tzinfo=self.tz)
        return datetime.combine(d, time(minutes // 60, minutes % 60), tzinfo=self.tz)

    def is_open(self, at: datetime) -> bool:
        return self.next_open(at) == at

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself when staff are at work then, else the next opening time (UTC)."""
        local = at.astimezone(self.tz)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            for w in self.windows:
                if w.weekday != day.weekday():
                    continue
                opens, closes = self._local(day, w.opens), self._local(day, w.closes)
                if opens <= local < closes:
                    return at
                if local < opens:
                    return opens.astimezone(UTC)
        raise ValueError("staff hours have no opening in the coming week")  # parse_windows prevents this

    def format(self, at: datetime) -> str:
        """A time as the HCP reads it: '08:00 GMT on Mon 24 Nov'."""
        local = at.astimezone(self.tz)
        return local.strftime("%H:%M %Z on %a %d %b")

    def describe(self) -> str:
        return f"{self.spec} ({self.tz.key})"


DEFAULT_SPEC = "Mon-Fri 08:00-18:00"
DEFAULT_TIMEZONE = "Europe/London"
DEFAULT_HOURS = StaffHours.parse(DEFAULT_SPEC, DEFAULT_TIMEZONE)


@lru_cache(maxsize=16)
def _parsed(spec: str, timezone: str) -> StaffHours:
    return StaffHours.parse(spec, timezone)


def staff_hours(settings: Settings) -> StaffHours:
    """The configured hours (``CONCIERGE_STAFF_HOURS`` in ``CONCIERGE_STAFF_TIMEZONE``)."""
    return _parsed(settings.staff_hours, settings.staff_timezone)
