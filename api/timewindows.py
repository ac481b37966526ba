"""Reading the time settings operators write: time zones, opening hours and quiet hours.

Core: it imports nothing from the project but ``api.errors``, so ``api.settings`` can check these
values without importing the domains that use them (``api.handoffs.hours``, ``feedback.fatigue``).

Opening hours are what an operator writes in ``CONCIERGE_STAFF_HOURS``: one or more windows
separated by ``;`` or ``,``, each ``<days> <HH:MM>-<HH:MM>``, days as ``Mon-Fri`` or ``Sat``
(``24:00`` closes at midnight). Example: ``Mon-Fri 08:00-18:00; Sat 09:00-12:00``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from api.errors import InvalidInput

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^(?P<d1>[a-z]{3})(?:\s*-\s*(?P<d2>[a-z]{3}))?\s+(?P<h1>\d{1,2}):(?P<m1>\d{2})\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})$"
)


class UnknownTimezone(InvalidInput, ValueError):
    """Not an IANA time zone. A ``ValueError`` too, so settings validation reports it as such."""


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/London'") from exc


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


def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """'21:00-08:00' → (start, end) local times (may wrap midnight); '' or 'off' → no quiet hours."""
    value = value.strip()
    if value.lower() in ("", "off", "none"):
        return None
    m = re.fullmatch(r"\s*(\d{2}:\d{2})\s*-\s*(\d{2}:\d{2})\s*", value)
    try:
        if m is None:
            raise ValueError(value)
        start, end = time.fromisoformat(m.group(1)), time.fromisoformat(m.group(2))
    except ValueError as exc:
        raise InvalidInput(f"quiet hours must look like 21:00-08:00, not {value!r}") from exc
    if start == end:
        raise InvalidInput("quiet hours must not start and end at the same time")
    return start, end
