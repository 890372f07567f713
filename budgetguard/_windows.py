"""Budget windows: which settled spend counts against a cap at a given moment.

Reset semantics (the same in every ledger backend: memory, SQLite and Redis count the same buckets):

* **Spend counts in the window containing the moment it was settled** (the ledger's clock when
  ``settle`` ran), not the moment the call started. **Holds** (reservations of calls still in
  flight) are not tied to a window: they count against whatever window is current until they are
  settled, released or expire.
* **Calendar windows** (``Calendar("day", "America/New_York")``) reset at the boundary in the
  stated zone: a day runs from local midnight to the next local midnight, so on a DST change it
  is 23 or 25 hours long; a week starts on Monday 00:00, a month on the 1st at 00:00, a year on
  1 January. Minute and hour windows are 60 and 3600 seconds long, aligned to the zone's offset
  (an hour in Asia/Kolkata starts at hh:30 UTC; the repeated hour of a fall-back night is two
  separate hours). When local midnight does not exist (a DST gap at midnight) the day starts at
  the first instant after the gap.
* **Rolling windows** (``Rolling(3600)``) count spend settled in the last N seconds, measured in
  buckets of ``granularity`` seconds (default N/60, at least one second) aligned to the Unix
  epoch. The oldest bucket counts whole, so spend is forgotten between N and N + granularity
  seconds after it was settled, never earlier: a rolling cap is never looser than stated.
  ``1mo`` rolling means 30 days and ``1y`` 365 days.

Times are epoch seconds. Time zones come from ``zoneinfo`` (the OS database, or the ``tzdata``
package where the OS has none); ``UTC`` works without either.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from budgetguard._ledger._base import Window

__all__ = ["Calendar", "CalendarUnit", "Rolling", "Window", "load_zone", "parse_window"]

CalendarUnit = Literal["minute", "hour", "day", "week", "month", "year"]
_UNITS: tuple[str, ...] = get_args(CalendarUnit)
_FIXED_SECONDS = {"minute": 60, "hour": 3600}
# Longest a calendar unit can be, plus an hour for DST: how long a bucket can still matter.
_LONGEST = {
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 31 * 86400,
    "year": 366 * 86400,
}
_MAX_BUCKETS = 10_000  # a reserve sums every bucket of a rolling window; keep that bounded


@lru_cache(maxsize=64)
def load_zone(name: str) -> tzinfo:
    """The ``tzinfo`` for an IANA zone name, with an error that says how to fix a missing database."""
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        try:
            ZoneInfo("Europe/Paris")
        except ZoneInfoNotFoundError:
            raise ValueError(
                f"cannot load time zone {name!r}: no time zone database was found on this machine; "
                "install one with `pip install tzdata` (or the OS package tzdata)"
            ) from exc
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC', 'Europe/Paris' or "
            "'America/New_York'"
        ) from exc


@dataclass(frozen=True, slots=True)
class Rolling:
    """The last ``seconds`` seconds, counted in buckets of ``granularity`` seconds (see module doc)."""

    seconds: float
    granularity: float = 0.0  # 0: seconds / 60, at least 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds >= 1):
            raise ValueError(f"a rolling window must be at least 1 second long, got {self.seconds!r}")
        if not self.granularity:
            object.__setattr__(self, "granularity", float(max(1, int(self.seconds // 60))))
        if not (math.isfinite(self.granularity) and self.granularity > 0):
            raise ValueError(f"rolling window granularity must be positive, got {self.granularity!r}")
        if self.seconds / self.granularity > _MAX_BUCKETS:
            raise ValueError(
                f"rolling window of {self.seconds:g}s in buckets of {self.granularity:g}s needs more than "
                f"{_MAX_BUCKETS} buckets; use a coarser granularity"
            )

    @property
    def key(self) -> str:
        return f"rolling:{self.seconds:g}/{self.granularity:g}"

    @property
    def retention(self) -> float:
        return self.seconds + self.granularity

    def bucket(self, at: float) -> int:
        return math.floor(at / self.granularity)

    def buckets(self, now: float) -> range:
        return range(self.bucket(now - self.seconds), self.bucket(now) + 1)

    def span(self, now: float) -> tuple[float, float]:
        live = self.buckets(now)
        return live.start * self.granularity, live.stop * self.granularity

    def __str__(self) -> str:
        return f"rolling {_format_seconds(self.seconds)}"


@dataclass(frozen=True, slots=True)
class Calendar:
    """One calendar ``unit`` (day, month, ...) in zone ``tz``; resets at the boundary in that zone."""

    unit: CalendarUnit
    tz: str = "UTC"
    _zone: tzinfo = field(init=False, repr=False, compare=False)
    # The last span computed: spans partition time, so one that contains ``now`` is the answer.
    _last: tuple[float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unit not in _UNITS:
            raise ValueError(f"unknown calendar unit {self.unit!r}; expected one of {', '.join(_UNITS)}")
        zone = load_zone(self.tz)
        if zone is UTC:
            object.__setattr__(self, "tz", "UTC")  # one spelling, so one set of stored counters
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_last", (0.0, 0.0))

    @property
    def key(self) -> str:
        return f"calendar:{self.unit}:{self.tz}"

    @property
    def retention(self) -> float:
        return _LONGEST[self.unit] + 3600.0

    def bucket(self, at: float) -> int:
        return int(self.span(at)[0])

    def buckets(self, now: float) -> range:
        start = self.bucket(now)
        return range(start, start + 1)

    def span(self, now: float) -> tuple[float, float]:
        last = self._last
        if last[0] <= now < last[1]:
            return last
        span = self._compute_span(now)
        if now < span[0]:
            # datetime rounds to whole microseconds, so an instant a hair before a boundary can
            # read as the next unit: it belongs to the unit before (every unit is >= 60 s long).
            span = self._compute_span(span[0] - 1.0)
        object.__setattr__(self, "_last", span)  # one tuple: safe to share between threads
        return span

    def _compute_span(self, now: float) -> tuple[float, float]:
        zone = self._zone
        local = datetime.fromtimestamp(now, zone)
        length = _FIXED_SECONDS.get(self.unit)
        if length is not None:
            offset = _offset_seconds(local)
            start = math.floor((now + offset) / length) * length - offset
            return float(start), float(start + length)
        wall = local.replace(tzinfo=None)
        first, after = _truncate(wall, self.unit)
        start, end = _instant(first, zone), _instant(after, zone)
        if end <= now:  # a fall-back that repeats wall time across the boundary: stay in this unit
            end = after.replace(tzinfo=zone, fold=1).timestamp()
        return start, end

    def __str__(self) -> str:
        return f"calendar {self.unit} ({self.tz})"


def _offset_seconds(local: datetime) -> float:
    offset = local.utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def _truncate(wall: datetime, unit: str) -> tuple[datetime, datetime]:
    """The naive local start of ``wall``'s unit and of the next one."""
    day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day, day + timedelta(days=1)
    if unit == "week":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=7)
    if unit == "month":
        first = day.replace(day=1)
        return first, (first + timedelta(days=32)).replace(day=1)
    first = day.replace(month=1, day=1)
    return first, first.replace(year=first.year + 1)


def _instant(wall: datetime, zone: tzinfo) -> float:
    """The first instant whose local wall time in ``zone`` is ``wall`` or later."""
    early = wall.replace(tzinfo=zone, fold=0).timestamp()
    late = wall.replace(tzinfo=zone, fold=1).timestamp()
    if early <= late:  # unambiguous, or repeated by a fall-back: its first occurrence
        return early
    # ``wall`` is skipped by a spring-forward gap: find the transition, in whole seconds.
    lo, hi = math.floor(late), math.ceil(early)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return float(hi)


_WINDOW_RE = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d|w|mo|y)\s*$")
_UNIT_SECONDS = {
    "s": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "y": 365 * 86400,
}
_UNIT_CALENDAR: dict[str, CalendarUnit] = {
    "m": "minute",
    "min": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}


def parse_window(text: str, *, tz: str | None = None, rolling: bool) -> Window:
    """``1m``, ``1h``, ``1d``, ``1w``, ``1mo``, ``1y`` (and ``30m``, ``7d``, ... when rolling).

    A calendar window is exactly one unit (``1d``, ``1mo``) in zone ``tz`` (UTC by default); a
    rolling window is any whole number of units (``s`` seconds too). Raises ``ValueError`` with
    the accepted forms.
    """
    match = _WINDOW_RE.match(text.lower()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"invalid window {text!r}: expected a count and a unit such as '1m', '1h', '1d', '1w', '1mo' "
            "(m = minutes, mo = months)"
        )
    count, unit = int(match.group(1)), match.group(2)
    if count <= 0:
        raise ValueError(f"invalid window {text!r}: the count must be positive")
    if rolling:
        return Rolling(float(count * _UNIT_SECONDS[unit]))
    if unit == "s":
        raise ValueError(
            f"invalid window {text!r}: calendar windows are minutes or longer; seconds need a rolling window"
        )
    if count != 1:
        raise ValueError(
            f"invalid window {text!r}: a calendar window is one unit ('1d', '1mo'); "
            f"for {text.strip()} use a rolling window"
        )
    return Calendar(_UNIT_CALENDAR[unit], tz or "UTC")


def _format_seconds(seconds: float) -> str:
    for name, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{name}"
    return f"{seconds:g}s"
