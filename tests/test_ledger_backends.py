"""The ledger contract, specified once and run against every backend: memory, SQLite, a real Redis, a
real Redis Cluster (three primaries, three replicas), and leases (``LeasingLedger``) over both."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from _redis_cluster import redis_cluster, redis_cluster_url  # noqa: F401 - the fixtures
from _redis_server import redis_url  # noqa: F401 - the fixture, shared with the other Redis tests

from budgetguard._ledger import (
    Amount,
    Hold,
    LeasingLedger,
    Ledger,
    Limits,
    MemoryLedger,
    Refused,
    SpendRecord,
    usd_to_picos,
)
from budgetguard._ledger._cluster import RedisClusterLedger
from budgetguard._ledger._redis import RedisLedger
from budgetguard._ledger._sqlite import SQLiteLedger
from budgetguard._usage import Usage
from budgetguard._windows import Calendar, Rolling

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()


class Clock:
    """An injected clock that only moves when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeLedger = Callable[[Clock], Ledger]


LEASED = ("sqlite-leased", "redis-leased", "cluster-leased")


@pytest.fixture(params=["memory", "sqlite", "redis", "cluster", *LEASED])
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLedger]:
    """Opens ledgers of one backend; every ledger opened in one test shares the same store.

    The leased ones take slices of a tenth of each cap from the first call and flush on their own
    only once an hour, so what the store holds is decided by the test's operations, not by the
    flushing thread."""
    opened: list[Ledger] = []
    memory: list[MemoryLedger] = []
    prefix = f"test-{uuid.uuid4().hex[:8]}:"

    def make(clock: Clock) -> Ledger:
        ledger: Ledger
        if request.param == "memory":
            if not memory:  # a process's memory store is one object
                memory.append(MemoryLedger(clock=clock, keep_records=1000))
            ledger = memory[0]
            ledger.clock = clock
        elif request.param.startswith("sqlite"):
            ledger = SQLiteLedger(tmp_path / "ledger.db", clock=clock)
        elif request.param.startswith("redis"):
            ledger = RedisLedger(request.getfixturevalue("redis_url"), clock=clock, prefix=prefix)
        else:
            ledger = RedisClusterLedger(
                request.getfixturevalue("redis_cluster_url"), clock=clock, prefix=prefix
            )
        if request.param in LEASED:
            opened.append(ledger)
            ledger = LeasingLedger(ledger, fraction="0.1", flush=3600, hot=math.inf)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in reversed(opened):  # a leasing ledger before the store it writes to
        ledger.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(make_ledger: MakeLedger, clock: Clock) -> Ledger:
    return make_ledger(clock)


def usd(text: str) -> int:
    return usd_to_picos(Decimal(text))


def amount(dollars: str = "0.01", tokens: int = 100, requests: int = 1) -> Amount:
    return Amount(usd(dollars), tokens, requests)


def granted(result: Hold | Refused) -> Hold:
    assert isinstance(result, Hold), f"expected the reservation to be granted, got {result}"
    return result


def refused(result: Hold | Refused) -> Refused:
    assert isinstance(result, Refused), f"expected the reservation to be refused, got {result}"
    return result


DOLLAR = Limits(picos=usd("1"))
DAY = Calendar("day")


# --- reserve ---------------------------------------------------------------------------------------


def test_a_reservation_within_every_cap_is_held(ledger: Ledger) -> None:
    hold = granted(ledger.reserve("b", amount("0.40"), Limits(usd("1"), 1000, 5), DAY))
    assert hold.budget == "b"
    assert hold.amount == amount("0.40")
    snap = ledger.snapshot("b", DAY)
    assert snap.reserved == amount("0.40")
    assert snap.spent == Amount()


@pytest.mark.parametrize(
    ("limits", "kind"),
    [
        (Limits(picos=usd("1")), "usd"),
        (Limits(tokens=250), "tokens"),
        (Limits(requests=2), "requests"),
    ],
)
def test_a_reservation_past_any_one_cap_is_refused_with_the_numbers(
    ledger: Ledger, limits: Limits, kind: str
) -> None:
    first = granted(ledger.reserve("b", amount("0.40"), limits, DAY))
    ledger.settle(first, amount("0.40"))
    granted(ledger.reserve("b", amount("0.40"), limits, DAY))
    result = refused(ledger.reserve("b", amount("0.40"), limits, DAY))
    assert result.kind == kind
    assert result.limit == limits.get(result.kind)
    assert result.spent == amount("0.40")
    assert result.reserved == amount("0.40")
    assert result.requested == amount("0.40")
    assert ledger.snapshot("b", DAY).reserved == amount("0.40")  # a refusal holds nothing


def test_a_reservation_that_exactly_fills_the_cap_is_granted(ledger: Ledger) -> None:
    granted(ledger.reserve("b", amount("0.60"), DOLLAR, DAY))
    granted(ledger.reserve("b", amount("0.40"), DOLLAR, DAY))
    refused(ledger.reserve("b", Amount(1, 0, 0), DOLLAR, DAY))


def test_an_uncapped_budget_grants_everything_and_still_counts(ledger: Ledger) -> None:
    for _ in range(3):
        ledger.settle(granted(ledger.reserve("b", amount("100"), Limits(), DAY)), amount("100"))
    assert ledger.snapshot("b", DAY).spent == Amount(usd("300"), 300, 3)


def test_budgets_do_not_share_caps(ledger: Ledger) -> None:
    ledger.settle(granted(ledger.reserve("a", amount("1"), DOLLAR, DAY)), amount("1"))
    granted(ledger.reserve("b", amount("1"), DOLLAR, DAY))
    refused(ledger.reserve("a", amount("0.01"), DOLLAR, DAY))


# --- settle and release ----------------------------------------------------------------------------


def test_settle_replaces_the_hold_with_the_actual_spend(ledger: Ledger) -> None:
    hold = granted(ledger.reserve("b", amount("0.50"), DOLLAR, DAY))
    ledger.settle(hold, amount("0.20", tokens=40))
    snap = ledger.snapshot("b", DAY)
    assert snap.reserved == Amount()
    assert snap.spent == amount("0.20", tokens=40)
    granted(ledger.reserve("b", amount("0.80"), DOLLAR, DAY))  # the unused part is free again


def test_settle_records_the_truth_even_past_the_cap(ledger: Ledger) -> None:
    hold = granted(ledger.reserve("b", amount("0.50"), DOLLAR, DAY))
    ledger.settle(hold, amount("1.25"))
    assert ledger.snapshot("b", DAY).spent == amount("1.25")
    result = refused(ledger.reserve("b", Amount(1, 0, 0), DOLLAR, DAY))
    assert result.spent == amount("1.25")


def test_release_drops_the_hold_and_spends_nothing(ledger: Ledger) -> None:
    hold = granted(ledger.reserve("b", amount("0.90"), DOLLAR, DAY))
    ledger.release(hold)
    assert ledger.snapshot("b", DAY).reserved == Amount()
    assert ledger.snapshot("b", DAY).spent == Amount()
    granted(ledger.reserve("b", amount("1"), DOLLAR, DAY))


def test_settling_or_releasing_twice_counts_once(ledger: Ledger) -> None:
    settled = granted(ledger.reserve("b", amount("0.30"), DOLLAR, DAY))
    released = granted(ledger.reserve("b", amount("0.30"), DOLLAR, DAY))
    ledger.settle(settled, amount("0.25"))
    ledger.settle(settled, amount("0.25"))
    ledger.release(settled)
    ledger.release(released)
    ledger.release(released)
    ledger.settle(released, amount("0.25"))
    snap = ledger.snapshot("b", DAY)
    assert snap.spent == amount("0.25")
    assert snap.reserved == Amount()


def test_spend_without_a_reservation_counts_every_time(ledger: Ledger) -> None:
    unreserved = Hold("", "b", Amount(), 0.0, DAY)
    ledger.settle(unreserved, amount("0.10"))
    ledger.settle(unreserved, amount("0.10"))
    ledger.release(unreserved)
    assert ledger.snapshot("b", DAY).spent == amount("0.20", tokens=200, requests=2)
    assert ledger.snapshot("b", None).spent == amount("0.20", tokens=200, requests=2)


def test_money_adds_exactly_in_picodollars(ledger: Ledger) -> None:
    tiny = Amount(usd("0.000000123456"), 1, 1)
    for _ in range(7):
        ledger.settle(granted(ledger.reserve("b", tiny, DOLLAR, DAY)), tiny)
    assert ledger.snapshot("b", DAY).spent.usd == Decimal("0.000000864192")


def test_spend_above_the_float_range_still_adds_exactly(ledger: Ledger) -> None:
    # 2^53 picodollars is about $9,007; counters are 64-bit integers in every backend.
    big = Amount(usd("12345.678901234567"), 0, 1)
    ledger.settle(granted(ledger.reserve("b", big, Limits(), None)), big)
    ledger.settle(granted(ledger.reserve("b", big, Limits(), None)), big)
    assert ledger.snapshot("b", None).spent.usd == Decimal("24691.357802469134")


# --- holds expire ----------------------------------------------------------------------------------


def test_a_hold_past_its_ttl_stops_counting(ledger: Ledger, clock: Clock) -> None:
    granted(ledger.reserve("b", amount("0.90"), DOLLAR, DAY, ttl=30))
    refused(ledger.reserve("b", amount("0.20"), DOLLAR, DAY))
    clock.advance(29)
    assert ledger.snapshot("b", DAY).reserved == amount("0.90")
    clock.advance(1)
    assert ledger.snapshot("b", DAY).reserved == Amount()
    granted(ledger.reserve("b", amount("1"), DOLLAR, DAY))


def test_a_hold_settled_after_it_expired_is_still_charged_once(ledger: Ledger, clock: Clock) -> None:
    hold = granted(ledger.reserve("b", amount("0.50"), DOLLAR, DAY, ttl=30))
    clock.advance(60)
    granted(ledger.reserve("b", amount("0.10"), DOLLAR, DAY))  # purges the expired hold
    ledger.settle(hold, amount("0.45"))
    ledger.settle(hold, amount("0.45"))
    snap = ledger.snapshot("b", DAY)
    assert snap.spent == amount("0.45")
    assert snap.reserved == amount("0.10")


def test_a_non_positive_ttl_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="ttl"):
        ledger.reserve("b", amount(), DOLLAR, DAY, ttl=0)


# --- windows ---------------------------------------------------------------------------------------


def test_a_daily_budget_resets_at_midnight_in_its_zone(ledger: Ledger, clock: Clock) -> None:
    day = Calendar("day", "America/New_York")
    clock.now = datetime(2024, 3, 9, 23, 59, tzinfo=ZoneInfo("America/New_York")).timestamp()
    ledger.settle(granted(ledger.reserve("b", amount("1"), DOLLAR, day)), amount("1"))
    refused(ledger.reserve("b", amount("0.01"), DOLLAR, day))
    clock.advance(60)  # 00:00 on the spring-forward day
    assert ledger.snapshot("b", day).spent == Amount()
    ledger.settle(granted(ledger.reserve("b", amount("1"), DOLLAR, day)), amount("1"))
    clock.advance(23 * 3600 - 1)  # 23:59:59 EDT: the same (23-hour) day
    refused(ledger.reserve("b", amount("0.01"), DOLLAR, day))
    clock.advance(1)
    granted(ledger.reserve("b", amount("1"), DOLLAR, day))
    assert ledger.snapshot("b", None).spent == amount("2", tokens=200, requests=2)  # all-time total


def test_a_fall_back_day_keeps_counting_for_25_hours(ledger: Ledger, clock: Clock) -> None:
    day = Calendar("day", "America/New_York")
    clock.now = datetime(2024, 11, 3, 0, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
    ledger.settle(granted(ledger.reserve("b", amount("1"), DOLLAR, day)), amount("1"))
    clock.advance(24 * 3600)  # 23:00 EST, still 3 November
    refused(ledger.reserve("b", amount("0.01"), DOLLAR, day))
    clock.advance(3600)
    granted(ledger.reserve("b", amount("1"), DOLLAR, day))


def test_spend_counts_in_the_window_it_was_settled_in(ledger: Ledger, clock: Clock) -> None:
    clock.now = datetime(2024, 6, 1, 23, 59, tzinfo=ZoneInfo("UTC")).timestamp()
    hold = granted(ledger.reserve("b", amount("0.60"), DOLLAR, DAY))
    assert ledger.snapshot("b", DAY).reserved == amount("0.60")
    clock.advance(120)  # the call finishes on 2 June
    assert ledger.snapshot("b", DAY).reserved == amount("0.60")  # in-flight holds count in the current day
    ledger.settle(hold, amount("0.60"))
    assert ledger.snapshot("b", DAY).spent == amount("0.60")
    clock.now = datetime(2024, 6, 1, 23, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert ledger.snapshot("b", DAY).spent == Amount()  # 1 June saw none of it


def test_a_monthly_budget_resets_on_the_first(ledger: Ledger, clock: Clock) -> None:
    month = Calendar("month", "Europe/Paris")
    clock.now = datetime(2024, 1, 31, 23, 30, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    ledger.settle(granted(ledger.reserve("b", amount("1"), DOLLAR, month)), amount("1"))
    refused(ledger.reserve("b", amount("0.01"), DOLLAR, month))
    clock.now = datetime(2024, 2, 1, 0, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    granted(ledger.reserve("b", amount("1"), DOLLAR, month))


def test_rolling_spend_expires_after_the_window(ledger: Ledger, clock: Clock) -> None:
    hour = Rolling(3600)
    clock.now = 1_800_000_000.0  # a whole minute
    ledger.settle(granted(ledger.reserve("b", amount("0.70"), DOLLAR, hour)), amount("0.70"))
    clock.advance(1800)
    ledger.settle(granted(ledger.reserve("b", amount("0.30"), DOLLAR, hour)), amount("0.30"))
    refused(ledger.reserve("b", amount("0.01"), DOLLAR, hour))
    clock.advance(1800)  # exactly an hour after the first: still counted
    refused(ledger.reserve("b", amount("0.01"), DOLLAR, hour))
    clock.advance(60)  # past the hour and its one-minute bucket: the first spend is forgotten
    assert ledger.snapshot("b", hour).spent == amount("0.30")
    granted(ledger.reserve("b", amount("0.70"), DOLLAR, hour))
    clock.advance(1800)
    assert ledger.snapshot("b", hour).spent == Amount()


# --- records ---------------------------------------------------------------------------------------


def a_record(budget: str = "daily", key: str | None = "alice", **changes: object) -> SpendRecord:
    record = SpendRecord(
        time=0.0,
        budget=budget,
        key=key,
        scope_path="run/agent/summarize",
        model="gpt-4o-mini-2024-07-18",
        endpoint="chat.completions",
        usage=Usage(
            prompt_tokens=1200,
            completion_tokens=345,
            cached_tokens=1024,
            cache_write_tokens=7,
            reasoning_tokens=128,
            input_audio_tokens=3,
            output_audio_tokens=4,
            input_image_tokens=5,
            output_image_tokens=6,
            requests=1,
            cost_usd=Decimal("0.000123456789012345"),
            estimated_requests=1,
        ),
        reserved_usd=Decimal("0.00098765"),
        estimated=True,
        price_source="genai-prices 0.2.3",
        request_id="req_abc123",
        extra={"attempt": "2", "note": "ünïcode ✓"},
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def test_records_round_trip_exactly_with_the_settle_time(ledger: Ledger, clock: Clock) -> None:
    clock.now = 1_717_243_200.123456
    record = a_record()
    hold = granted(ledger.reserve("daily/alice", amount("0.001"), DOLLAR, DAY))
    ledger.settle(hold, Amount.of_usage(record.usage), record)
    assert ledger.records() == [replace(record, time=clock.now)]


def test_records_keep_absent_keys_and_request_ids_absent(ledger: Ledger) -> None:
    record = a_record(key=None, request_id=None, extra={}, estimated=False, price_source="")
    ledger.settle(granted(ledger.reserve("daily", amount(), DOLLAR, DAY)), amount(), record)
    [stored] = ledger.records()
    assert stored.key is None
    assert stored.request_id is None
    assert stored == replace(record, time=stored.time)


def test_records_filter_by_budget_and_time(ledger: Ledger, clock: Clock) -> None:
    for budget in ("a", "b", "a"):
        ledger.settle(granted(ledger.reserve(budget, amount(), DOLLAR, DAY)), amount(), a_record(budget))
        clock.advance(10)
    assert [r.budget for r in ledger.records()] == ["a", "b", "a"]
    assert [r.time - T0 for r in ledger.records(budget="a")] == [0, 20]
    assert [r.time - T0 for r in ledger.records(since=T0 + 10)] == [10, 20]
    assert [r.time - T0 for r in ledger.records(since=T0 + 10, until=T0 + 20)] == [10]


def test_a_settle_without_a_record_counts_but_lists_nothing(ledger: Ledger) -> None:
    ledger.settle(granted(ledger.reserve("b", amount(), DOLLAR, DAY)), amount())
    assert ledger.records() == []
    assert ledger.snapshot("b", DAY).spent == amount()


def test_a_second_ledger_on_the_same_store_sees_the_same_budget(
    make_ledger: MakeLedger, clock: Clock, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["make_ledger"] in LEASED:
        pytest.skip("with leases another ledger sees spend once flushed: tests/test_leases.py")
    first = make_ledger(clock)
    hold = granted(first.reserve("shared", amount("0.50"), DOLLAR, DAY))
    first.settle(
        granted(first.reserve("shared", amount("0.25"), DOLLAR, DAY)), amount("0.25"), a_record("shared")
    )
    second = make_ledger(clock)
    snap = second.snapshot("shared", DAY)
    assert snap.spent == amount("0.25")
    assert snap.reserved == amount("0.50")
    second.settle(hold, amount("0.50"))  # a hold from one connection settles on another
    refused(second.reserve("shared", amount("0.26"), DOLLAR, DAY))
    assert len(second.records()) == 1
