"""When staff answer: opening hours in a named timezone, and the next time a human is at work.

The spec is what an operator writes in ``CONCIERGE_STAFF_HOURS``: one or more windows separated
by ``;`` or ``,``, each ``<days> <HH:MM>-<HH:MM>``, days as ``Mon-Fri`` or ``Sat`` (``24:00`` closes
at midnight). Example: ``Mon-Fri 08:00-18:00; Sat 09:00-12:00``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from api.settings import Settings

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^(?P<d1>[a-z]{3})(?:\s*-\s*(?P<d2>[a-z]{3}))?\s+(?P<h1>\d{1,2}):(?P<m1>\d{2})\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})$"
)


@dataclass(frozen=True)
class Window:
    weekday: int   # Monday = 0
    opens: int     # minutes after local midnight
    closes: int    # minutes after local midnight, up to 24 * 60


def parse_windows(spec: str) -> tuple[Window, ...]:
    """``"Mon-Fri 08:00-18:00; Sat 09:00-12:00"`` → windows; ValueError naming what is wrong."""
    windows: list[Window] = []
    parts = [p.strip() for p in re.split(r"[;,]", spec or "") if p.strip()]
    if not parts:
        raise ValueError("staff hours are empty; write e.g. 'Mon-Fri 08:00-18:00'")
    for part in parts:
        m = _WINDOW.match(part.lower())
        if m is None:
            raise ValueError(f"cannot read staff hours {part!r}; write e.g. 'Mon-Fri 08:00-18:00'")
        d1, d2 = m["d1"], m["d2"] or m["d1"]
        if d1 not in DAYS or d2 not in DAYS:
            raise ValueError(f"unknown day in {part!r}; days are {', '.join(d.title() for d in DAYS)}")
        opens = int(m["h1"]) * 60 + int(m["m1"])
        closes = int(m["h2"]) * 60 + int(m["m2"])
        if int(m["m1"]) > 59 or int(m["m2"]) > 59 or opens >= 24 * 60 or closes > 24 * 60:
            raise ValueError(f"impossible time in {part!r}")
        if closes <= opens:
            raise ValueError(f"{part!r} closes before it opens")
        first, last = DAYS.index(d1), DAYS.index(d2)
        span = range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)]
        windows.extend(Window(day, opens, closes) for day in span)
    return tuple(sorted(windows, key=lambda w: (w.weekday, w.opens)))


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}; use an IANA name such as 'Europe/London'") from exc


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
