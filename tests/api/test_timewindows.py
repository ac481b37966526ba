"""api.timewindows: the one reader of time zones, opening hours and quiet hours, used by settings,
staff hours and the fatigue guard alike."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.errors import InvalidInput
from api.handoffs.hours import StaffHours
from api.settings import Settings
from api.timewindows import UnknownTimezone, parse_timezone
from feedback.fatigue import FatiguePolicy


def test_an_unknown_zone_is_one_error_for_every_caller() -> None:
    with pytest.raises(UnknownTimezone, match="IANA") as exc:
        parse_timezone("Mars/Olympus_Mons")
    assert isinstance(exc.value, InvalidInput) and isinstance(exc.value, ValueError)
    with pytest.raises(InvalidInput, match="unknown time zone"):
        FatiguePolicy(default_timezone="Atlantis/Capital").timezone_for("ZZ")
    with pytest.raises(ValueError, match="unknown time zone"):
        StaffHours.parse("Mon 09:00-10:00", "Nowhere/Town")


def test_settings_refuse_bad_time_values_as_validation_errors() -> None:
    for field, value in (("staff_timezone", "Moon/Base"), ("market_timezones", {"gb": "Moon/Base"}),
                         ("staff_hours", "Funday 09:00-10:00")):
        with pytest.raises(ValidationError, match=field):
            Settings(**{field: value})


def test_settings_keep_good_time_values() -> None:
    settings = Settings(staff_timezone="Asia/Tokyo", market_timezones={"jp": "Asia/Tokyo"},
                        staff_hours="Sat 09:00-12:00", quiet_hours="off")
    assert settings.market_timezones == {"JP": "Asia/Tokyo"}
    assert parse_timezone(settings.staff_timezone).key == "Asia/Tokyo"
