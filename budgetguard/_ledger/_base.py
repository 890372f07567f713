"""The ledger interface: reserve, settle, release, and what has been spent in a window.

Scopes talk to a ``Ledger``; backends (memory, SQLite, Redis) implement it. Money crosses this
interface as integer picodollars (10^-12 USD) so every backend adds exactly, including Redis,
whose counters are 64-bit integers (enough for $9.2 million per counter).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from budgetguard._usage import Usage

__all__ = [
    "DONE_GRACE",
    "PICOS_PER_USD",
    "Amount",
    "Hold",
    "Ledger",
    "LimitKind",
    "Limits",
    "Refused",
    "Snapshot",
    "SpendRecord",
    "Window",
    "picos_to_usd",
    "usd_to_picos",
]

PICOS_PER_USD = 10**12
#: Seconds a settled or released hold id is remembered, so a repeated settle is not counted twice.
DONE_GRACE = 120.0
LimitKind = Literal["usd", "tokens", "requests"]


def usd_to_picos(usd: Decimal) -> int:
    """Dollars to whole picodollars, rounded up so a reservation is never short."""
    # In integers: exact whatever the decimal context, and cheaper than Decimal arithmetic.
    numerator, denominator = usd.as_integer_ratio()
    return -(-numerator * PICOS_PER_USD // denominator)


def picos_to_usd(picos: int) -> Decimal:
    return Decimal(picos).scaleb(-12).normalize() if picos else Decimal(0)


@dataclass(frozen=True, slots=True)
class Amount:
    """What a call costs or may cost, in every dimension a budget can cap."""

    picos: int = 0
    tokens: int = 0
    requests: int = 0

    @property
    def usd(self) -> Decimal:
        return picos_to_usd(self.picos)

    def __add__(self, other: Amount) -> Amount:
        return Amount(self.picos + other.picos, self.tokens + other.tokens, self.requests + other.requests)

    def __sub__(self, other: Amount) -> Amount:
        return Amount(self.picos - other.picos, self.tokens - other.tokens, self.requests - other.requests)

    def get(self, kind: LimitKind) -> int:
        return self.picos if kind == "usd" else self.tokens if kind == "tokens" else self.requests

    @classmethod
    def of_usage(cls, usage: Usage) -> Amount:
        return cls(usd_to_picos(usage.cost_usd), usage.total_tokens, usage.requests)


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps per dimension; ``None`` means uncapped."""

    picos: int | None = None
    tokens: int | None = None
    requests: int | None = None

    def get(self, kind: LimitKind) -> int | None:
        return self.picos if kind == "usd" else self.tokens if kind == "tokens" else self.requests

    def first_exceeded(self, used: Amount, requested: Amount) -> LimitKind | None:
        """The first dimension in which ``used + requested`` would pass its cap."""
        return self.first_exceeded_at(
            used.picos + requested.picos, used.tokens + requested.tokens, used.requests + requested.requests
        )

    def first_exceeded_at(self, picos: int, tokens: int, requests: int) -> LimitKind | None:
        """The first dimension in which these totals pass its cap."""
        # Spelled out rather than a loop over the kinds: every reservation runs it.
        if self.picos is not None and picos > self.picos:
            return "usd"
        if self.tokens is not None and tokens > self.tokens:
            return "tokens"
        if self.requests is not None and requests > self.requests:
            return "requests"
        return None

    @property
    def unlimited(self) -> bool:
        return self.picos is None and self.tokens is None and self.requests is None


class Window(Protocol):
    """Which spend counts against a cap at a given moment (see ``budgetguard._windows``).

    Ledgers keep settled spend in integer *buckets* of a window (a calendar window is one bucket
    per day, month, ...; a rolling window has a few dozen), so every backend counts exactly the
    same spend and a reserve sums a bounded number of counters however many calls were made.
    """

    @property
    def key(self) -> str:
        """Stable text naming the window (same in every process): it names the stored counters."""
        ...

    @property
    def retention(self) -> float:
        """Seconds after which spend settled now can no longer count in any span."""
        ...

    def bucket(self, at: float) -> int:
        """The bucket that spend settled at ``at`` is added to."""
        ...

    def buckets(self, now: float) -> range:
        """The buckets whose spend counts at ``now``."""
        ...

    def span(self, now: float) -> tuple[float, float]:
        """``[start, end)`` in epoch seconds: spend settled in it counts at ``now``."""
        ...


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation held in a ledger until it is settled or released."""

    id: str
    budget: str
    amount: Amount
    expires_at: float
    #: The window the hold was reserved against: ``settle`` adds the spend to its bucket.
    window: Window | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a reservation was refused: the dimension and the numbers at that moment."""

    kind: LimitKind
    limit: int
    spent: Amount
    reserved: Amount
    requested: Amount


@dataclass(frozen=True, slots=True)
class Snapshot:
    spent: Amount
    reserved: Amount


@dataclass(frozen=True, slots=True)
class SpendRecord:
    """One settled call as a budget saw it. Persistent ledgers keep these for reports.

    ``budget`` is the budget's name and ``key`` its key (keyed budgets); ``time`` is when the call
    was settled; ledgers store it with their own clock's reading at settle time, the moment that
    decides which window the spend counts in.
    """

    time: float
    budget: str
    key: str | None
    scope_path: str
    model: str
    endpoint: str
    usage: Usage
    reserved_usd: Decimal
    estimated: bool = False
    price_source: str = ""
    request_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Ledger(ABC):
    """Atomic reserve / settle / release against caps, per budget key and window.

    ``reserve`` is the only operation that can refuse: it checks ``spent-in-window +
    reserved + amount`` against every cap and records a hold in one atomic step. ``settle``
    replaces a hold with what was actually spent (it never refuses: the truth is recorded even
    when it is over the cap) and ``release`` drops a hold. Holds expire after their TTL so a
    crashed process cannot pin a budget forever.

    Settling or releasing a hold twice is harmless: the ledger remembers a finished hold's id
    for ``DONE_GRACE`` seconds (or until the hold would have expired, if later) and ignores a
    repeat. A hold the ledger no longer knows (it expired first) is still settled: the spend is
    real, so it is counted. Spend is added to the total and to the bucket of the hold's window
    that contains the ledger's clock at settle time; a record passed to ``settle`` is stored
    with that time. Spend that had no reservation is settled with a hold whose id is empty,
    ``Hold("", budget, Amount(), 0.0, window)``: each such settle counts.
    """

    #: Seconds since the epoch; injectable so window roll-over can be tested.
    clock: Callable[[], float]
    #: Whether settle() stores the records it is given; callers skip building them if not.
    keeps_records: bool = True

    @abstractmethod
    def reserve(
        self, budget: str, amount: Amount, limits: Limits, window: Window | None, *, ttl: float = 600.0
    ) -> Hold | Refused: ...

    @abstractmethod
    def settle(self, hold: Hold, actual: Amount, record: SpendRecord | None = None) -> None: ...

    @abstractmethod
    def release(self, hold: Hold) -> None: ...

    @abstractmethod
    def snapshot(self, budget: str, window: Window | None) -> Snapshot: ...

    def records(
        self, *, budget: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[SpendRecord]:
        """Settled records, oldest first. Backends that keep none return an empty list."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, most backends have nothing to close
        """Release connections or files."""


def _check_ttl(ttl: float) -> None:
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"hold ttl must be a positive number of seconds, got {ttl!r}")
