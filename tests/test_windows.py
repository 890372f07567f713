"""Windows: calendar units reset at the boundary in their zone (DST included); rolling windows forget late."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetguard import _windows
from budgetguard._windows import Calendar, Rolling, load_zone, parse_window

HOUR = 3600.0
DAY = 86400.0


def at(text: str, zone: str = "UTC") -> float:
    """Epoch seconds of a local wall time such as ``2024-03-10T01:30`` in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def local(ts: float, zone: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


# --- calendar days --------------------------------------------------------------------------------


def test_a_utc_day_runs_from_midnight_to_midnight() -> None:
    assert Calendar("day").span(at("2024-01-15T13:45")) == (at("2024-01-15T00:00"), at("2024-01-16T00:00"))


def test_the_last_second_of_a_day_is_in_that_day_and_midnight_starts_the_next() -> None:
    day = Calendar("day", "America/New_York")
    last = at("2024-06-01T23:59:59", "America/New_York")
    assert day.span(last)[1] == last + 1
    assert day.span(last + 1)[0] == last + 1


def test_an_instant_a_hair_before_midnight_is_still_in_that_day() -> None:
    midnight = at("2004-01-01T00:00")
    assert Calendar("day").span(midnight - 2e-7) == (midnight - 86400, midnight)


def test_a_new_york_day_on_spring_forward_is_23_hours() -> None:
    start, end = Calendar("day", "America/New_York").span(at("2024-03-10T12:00", "America/New_York"))
    assert local(start, "America/New_York") == "2024-03-10 00:00 EST"
    assert local(end, "America/New_York") == "2024-03-11 00:00 EDT"
    assert end - start == 23 * HOUR


def test_a_new_york_day_on_fall_back_is_25_hours() -> None:
    start, end = Calendar("day", "America/New_York").span(at("2024-11-03T12:00", "America/New_York"))
    assert local(start, "America/New_York") == "2024-11-03 00:00 EDT"
    assert local(end, "America/New_York") == "2024-11-04 00:00 EST"
    assert end - start == 25 * HOUR


def test_both_one_oclock_hours_of_a_fall_back_night_belong_to_the_same_day() -> None:
    day = Calendar("day", "America/New_York")
    first_1am = at("2024-11-03T05:30")  # 01:30 EDT
    second_1am = at("2024-11-03T06:30")  # 01:30 EST
    assert day.span(first_1am) == day.span(second_1am)
    assert day.bucket(first_1am) == day.bucket(second_1am)


def test_a_day_whose_midnight_does_not_exist_starts_when_the_clocks_jump() -> None:
    # Chile moved its clocks from 00:00 to 01:00 on 2024-09-08.
    start, end = Calendar("day", "America/Santiago").span(at("2024-09-08T12:00", "America/Santiago"))
    assert local(start, "America/Santiago") == "2024-09-08 01:00 -03"
    assert end - start == 23 * HOUR


def test_the_same_instant_is_a_different_day_in_different_zones() -> None:
    instant = at("2024-05-01T02:00")  # 22:00 on 30 April in New York
    assert Calendar("day").span(instant)[0] == at("2024-05-01T00:00")
    assert Calendar("day", "America/New_York").span(instant)[0] == at("2024-04-30T00:00", "America/New_York")


# --- other calendar units --------------------------------------------------------------------------


def test_a_month_starts_on_the_first_at_local_midnight() -> None:
    month = Calendar("month", "America/New_York")
    assert month.span(at("2024-01-31T23:59:59", "America/New_York")) == (
        at("2024-01-01T00:00", "America/New_York"),
        at("2024-02-01T00:00", "America/New_York"),
    )
    assert month.span(at("2024-02-01T00:00", "America/New_York"))[0] == at(
        "2024-02-01T00:00", "America/New_York"
    )


def test_february_of_a_leap_year_has_29_days_and_december_rolls_into_the_next_year() -> None:
    feb_start, feb_end = Calendar("month").span(at("2024-02-10T00:00"))
    assert feb_end - feb_start == 29 * DAY
    assert Calendar("month").span(at("2024-12-31T23:00")) == (at("2024-12-01T00:00"), at("2025-01-01T00:00"))


def test_a_month_containing_a_dst_change_is_an_hour_short() -> None:
    start, end = Calendar("month", "Europe/Paris").span(at("2024-03-15T00:00", "Europe/Paris"))
    assert end - start == 31 * DAY - HOUR


def test_a_week_starts_on_monday() -> None:
    start, end = Calendar("week").span(at("2024-05-02T10:00"))  # a Thursday
    assert (start, end) == (at("2024-04-29T00:00"), at("2024-05-06T00:00"))


def test_a_year_starts_on_the_first_of_january() -> None:
    assert Calendar("year", "Asia/Tokyo").span(at("2024-07-01T00:00", "Asia/Tokyo")) == (
        at("2024-01-01T00:00", "Asia/Tokyo"),
        at("2025-01-01T00:00", "Asia/Tokyo"),
    )


def test_an_hour_follows_the_zone_offset() -> None:
    # India is UTC+05:30, so its hours start at half past the UTC hour.
    start, end = Calendar("hour", "Asia/Kolkata").span(at("2024-05-01T10:10"))
    assert (start, end) == (at("2024-05-01T09:30"), at("2024-05-01T10:30"))


def test_the_repeated_hour_of_a_fall_back_night_is_two_separate_hours() -> None:
    hour = Calendar("hour", "America/New_York")
    first = hour.span(at("2024-11-03T05:30"))  # 01:30 EDT
    second = hour.span(at("2024-11-03T06:30"))  # 01:30 EST
    assert first == (at("2024-11-03T05:00"), at("2024-11-03T06:00"))
    assert second == (at("2024-11-03T06:00"), at("2024-11-03T07:00"))


def test_a_minute_is_sixty_seconds() -> None:
    assert Calendar("minute").span(at("2024-05-01T10:10:42")) == (
        at("2024-05-01T10:10"),
        at("2024-05-01T10:11"),
    )


ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
]


@settings(max_examples=300, deadline=None)
@given(
    now=st.floats(min_value=at("2000-01-01T00:00"), max_value=at("2037-12-31T00:00")),
    zone=st.sampled_from(ZONES),
    unit=st.sampled_from(["day", "week", "month", "year"]),
)
def test_calendar_windows_partition_time(now: float, zone: str, unit: _windows.CalendarUnit) -> None:
    window = Calendar(unit, zone)
    start, end = window.span(now)
    assert start <= now < end
    assert window.span(end)[0] == end  # the next window starts where this one ends
    assert window.span(start) == (start, end)
    assert window.bucket(now) == int(start)


@settings(max_examples=200, deadline=None)
@given(
    now=st.floats(min_value=at("2000-01-01T00:00"), max_value=at("2037-12-31T00:00")),
    zone=st.sampled_from(["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Asia/Kathmandu"]),
)
def test_hours_partition_time_in_zones_with_whole_hour_dst(now: float, zone: str) -> None:
    window = Calendar("hour", zone)
    start, end = window.span(now)
    assert start <= now < end
    assert end - start == HOUR
    assert window.span(end)[0] == end


# --- rolling windows -------------------------------------------------------------------------------


def test_a_rolling_hour_counts_in_one_minute_buckets() -> None:
    window = Rolling(3600)
    assert window.granularity == 60
    now = 1_000_020.0 + 59.5  # 1_000_020 is a whole minute
    start, end = window.span(now)
    assert (start, end) == (now - 59.5 - 3600, now - 59.5 + 60)


def test_rolling_spend_is_forgotten_between_n_and_n_plus_granularity_seconds_later() -> None:
    window = Rolling(3600)
    settled = 1_000_050.0
    bucket = window.bucket(settled)
    assert bucket in window.buckets(settled + 3600)  # still counted after exactly N seconds
    assert bucket not in window.buckets(settled + 3600 + 60)  # forgotten within N + granularity
    for now in (settled + 1, settled + 1800, settled + 3599):
        assert bucket in window.buckets(now)


def test_short_rolling_windows_use_one_second_buckets() -> None:
    assert Rolling(30).granularity == 1
    assert Rolling(90).granularity == 1
    assert Rolling(86400).granularity == 1440


def test_a_rolling_window_shorter_than_a_second_or_with_too_many_buckets_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 second"):
        Rolling(0.5)
    with pytest.raises(ValueError, match="coarser granularity"):
        Rolling(86400, granularity=1)


def test_windows_have_stable_distinct_keys() -> None:
    keys = {
        Rolling(3600).key,
        Rolling(86400).key,
        Calendar("day").key,
        Calendar("day", "Europe/Paris").key,
        Calendar("month").key,
    }
    assert len(keys) == 5
    assert Rolling(3600).key == Rolling(3600.0).key == "rolling:3600/60"
    assert Calendar("day", "Europe/Paris").key == "calendar:day:Europe/Paris"
    assert Calendar("day", "utc") == Calendar("day", "Etc/UTC") == Calendar("day")


# --- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("1m", "minute"),
        ("1min", "minute"),
        ("1h", "hour"),
        ("1d", "day"),
        ("1w", "week"),
        ("1mo", "month"),
        ("1y", "year"),
        (" 1D ", "day"),
    ],
)
def test_calendar_window_text(text: str, unit: str) -> None:
    assert parse_window(text, tz="Europe/Paris", rolling=False) == Calendar(unit, "Europe/Paris")  # type: ignore[arg-type]


def test_a_calendar_window_defaults_to_utc() -> None:
    assert parse_window("1d", rolling=False) == Calendar("day", "UTC")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("30m", 1800),
        ("1h", 3600),
        ("7d", 7 * 86400),
        ("1mo", 30 * 86400),
        ("1y", 365 * 86400),
    ],
)
def test_rolling_window_text(text: str, seconds: int) -> None:
    assert parse_window(text, rolling=True) == Rolling(seconds)


@pytest.mark.parametrize(
    ("text", "rolling", "message"),
    [
        ("7d", False, "one unit"),
        ("30s", False, "rolling"),
        ("1x", True, "invalid window '1x'"),
        ("d", True, "count and a unit"),
        ("0d", True, "positive"),
        ("1.5h", True, "count and a unit"),
    ],
)
def test_bad_window_text_is_refused_with_the_accepted_forms(text: str, rolling: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_window(text, rolling=rolling)


def test_an_unknown_zone_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match=r"unknown time zone 'Mars/Olympus'.*Europe/Paris"):
        Calendar("day", "Mars/Olympus")


def test_a_missing_zone_database_suggests_installing_tzdata(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_database(name: str) -> None:
        raise ZoneInfoNotFoundError(name)

    monkeypatch.setattr(_windows, "ZoneInfo", no_database)
    load_zone.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"pip install tzdata"):
            load_zone("Europe/Berlin")
        assert Calendar("day", "UTC").span(0.0) == (0.0, DAY)  # UTC never needs the database
    finally:
        monkeypatch.undo()
        load_zone.cache_clear()
