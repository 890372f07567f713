"""The ledger interface: reserve, settle, release, and what has been spent in a window.

Scopes talk to a ``Ledger``; backends (memory, SQLite, Redis) implement it. Money crosses this
interface as integer picodollars (10^-12 USD) so every backend adds exactly, including Redis,
whose counters are 64-bit integers (enough for $9.2 million per counter).

This module also holds the registry of backends by URI scheme. A ``Ledger`` subclass that
declares ``schemes`` in its own class body is registered for them when the class is created
(``__init_subclass__``); ``backend_for(uri)`` finds it. The built-in backends live in modules that
are imported the first time a URI needs one (see ``_BUILTIN_MODULES``), so ``import budgetguard``
pays for neither sqlite3 nor redis; they register themselves like any other backend.
"""

from __future__ import annotations

import importlib
import math
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal, NamedTuple, Protocol

from budgetguard._errors import ConfigError
from budgetguard._money import PICOS_PER_USD, picos_to_usd, usd_to_picos
from budgetguard._usage import Usage

__all__ = [
    "DONE_GRACE",
    "LEASE_OPTIONS",
    "PICOS_PER_USD",
    "Amount",
    "Hold",
    "LeaseGrant",
    "LeaseRenewal",
    "Ledger",
    "LimitKind",
    "Limits",
    "Refused",
    "Snapshot",
    "SpendRecord",
    "Window",
    "backend_for",
    "ledger_schemes",
    "picos_to_usd",
    "usd_to_picos",
]

#: Options ``open_ledger`` takes for every backend that ``supports_leases``: they wrap the store in a
#: ``LeasingLedger`` (see ``budgetguard._ledger._lease``) instead of going to the backend.
LEASE_OPTIONS = frozenset({"lease_usd", "lease_tokens", "lease_requests", "lease_fraction", "lease_flush"})
#: Seconds a settled or released hold id is remembered, so a repeated settle is not counted twice.
DONE_GRACE = 120.0
LimitKind = Literal["usd", "tokens", "requests"]


class Amount(NamedTuple):
    """What a call costs or may cost, in every dimension a budget can cap.

    A named tuple, not a frozen dataclass: every budgeted call builds two, and a frozen
    dataclass costs about two and a half times as much to build.
    """

    picos: int = 0
    tokens: int = 0
    requests: int = 0

    @property
    def usd(self) -> Decimal:
        return picos_to_usd(self.picos)

    # Sums amounts field by field (a tuple's + would concatenate them).
    def __add__(self, other: Amount) -> Amount:  # type: ignore[override]
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


class Hold(NamedTuple):
    """A reservation held in a ledger until it is settled or released.

    A named tuple rather than a frozen dataclass: every budgeted call makes one, and a tuple
    costs a third as much to build."""

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


@dataclass(frozen=True, slots=True)
class LeaseRenewal:
    """One round trip of the lease protocol (see ``budgetguard._ledger._lease``), done atomically
    by a store that ``supports_leases``:

    1. if ``new_id`` is already known (a retry whose reply was lost) nothing is done again and
       the lease stored under it is returned with ``applied=False``;
    2. the hold ``old_id`` (the process's previous lease, "" for none) is finished;
    3. ``flush`` is settled: each ``(bucket, amount)`` is added to the budget's all-time total and
       (bucket not None) to that bucket of ``window``; each ``(record, amount, time)`` of
       ``records`` is stored as settled at ``time`` (the record's own ``time`` is not used);
    4. a new hold ``new_id`` expiring at ``expires_at`` is taken, of ``keep`` (in-flight calls: never
       refused) plus ``credit`` (``min(carry, old - keep)`` when the old lease was still live, else
       0: headroom that stays reserved, so needs no check) plus ``extra``, the part checked
       against ``limits`` in the current window: at least ``want - credit``, and up to ``target -
       credit`` as room allows. When ``want`` does not fit, the new hold is ``keep + credit``
       and the answer carries the refusal. A hold of nothing is not stored.
    """

    budget: str
    window: Window | None
    old_id: str
    new_id: str
    expires_at: float
    flush: tuple[tuple[int | None, Amount], ...] = ()
    records: tuple[tuple[SpendRecord, Amount, float], ...] = ()
    keep: Amount = Amount()
    carry: Amount = Amount()
    want: Amount = Amount()
    target: Amount = Amount()
    limits: Limits = Limits()


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """What a ``LeaseRenewal`` left: the new lease hold (``amount`` may be zero: no hold) and, when
    ``want`` did not fit, the refusal with the store's numbers (``reserved`` excludes the new lease).
    ``applied`` is False when the renewal had already been applied (a retried request)."""

    amount: Amount
    refused: Refused | None = None
    applied: bool = True


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

    A backend opened by URI declares its ``schemes`` and implements ``from_uri``; it may also
    override ``check_uri`` (validate without opening) and declare ``uri_options`` (the keyword
    options ``open_ledger`` may pass it)::

        class MyLedger(Ledger):
            schemes = ("mystore",)
            uri_options = frozenset({"timeout"})

            @classmethod
            def from_uri(cls, uri, *, clock, **options):
                return cls(cls.check_uri(uri), clock=clock, **options)

    Declaring ``schemes`` in the class body registers the class for them when it is created;
    a scheme already registered to another class is an error. A subclass that does not declare
    ``schemes`` itself (a test double of a backend, say) registers nothing.
    """

    #: Seconds since the epoch; injectable so window roll-over can be tested.
    clock: Callable[[], float]
    #: Whether settle() stores the records it is given; callers skip building them if not.
    keeps_records: bool = True
    #: URI schemes this backend opens: lower case, without ``://`` (``("mystore",)``).
    schemes: ClassVar[tuple[str, ...]] = ()
    #: URI shapes for error messages (default: ``scheme://`` for each scheme).
    uri_examples: ClassVar[tuple[str, ...]] = ()
    #: Keyword options ``open_ledger(uri, **options)`` passes on to ``from_uri``; others are refused.
    uri_options: ClassVar[frozenset[str]] = frozenset()
    #: Whether ``renew_lease`` is implemented: ``open_ledger`` then also takes ``LEASE_OPTIONS``.
    supports_leases: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("schemes"):
            _register(cls)

    @classmethod
    def check_uri(cls, uri: str) -> str:
        """Validate ``uri`` (one of this backend's schemes) without opening anything.

        Returns the store the URI names, canonically: URIs for which it returns the same text
        share one ledger in ``open_ledger``. Raises ``ConfigError`` naming the URI and the shape
        expected. The default accepts every URI of the backend's schemes, as written.
        """
        return uri

    @classmethod
    def check_options(cls, uri: str, options: Mapping[str, object]) -> None:
        """Refuse, with ``ConfigError``, options this backend does not take (see ``uri_options``)."""
        unknown = sorted(set(options) - cls.uri_options - (LEASE_OPTIONS if cls.supports_leases else set()))
        if unknown:
            scheme = uri.partition("://")[0].lower()
            takes = ", ".join(sorted(cls.uri_options | (LEASE_OPTIONS if cls.supports_leases else set())))
            takes = takes or "none"
            raise ConfigError(
                f"invalid option for a {scheme}:// ledger: {', '.join(unknown)} "
                f"({_qualname(cls)} takes: {takes})"
            )

    @classmethod
    def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> Ledger:
        """Open the store ``uri`` names (``open_ledger`` has checked the options against
        ``uri_options``); raise ``ConfigError`` if the URI is malformed."""
        raise NotImplementedError(f"{_qualname(cls)} cannot be opened from a URI")

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

    def renew_lease(self, renewal: LeaseRenewal) -> LeaseGrant:
        """Apply one step of the lease protocol atomically (see ``LeaseRenewal``); backends that
        set ``supports_leases`` implement it. Raises ``StoreError`` when the store cannot answer
        (whatever ``fail_open`` says: the caller decides)."""
        raise NotImplementedError(f"{_qualname(type(self))} does not support leases")

    def return_leases(self, budget: str | None = None) -> None:  # noqa: B027 - a hook for leasing ledgers
        """Give back what this process holds of ``budget``'s cap (every budget: None) beyond its calls
        in flight, and make its settled spend visible to other processes. Only a ``LeasingLedger``
        holds anything; on any other ledger this does nothing, so a scope's end can always call it."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends have nothing to close
        """Release connections or files."""


def _check_ttl(ttl: float) -> None:
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"hold ttl must be a positive number of seconds, got {ttl!r}")


# --- the registry of backends by URI scheme ---------------------------------------------------

# The built-in backends, imported in this order the first time a URI's scheme is not registered
# yet (or the list of schemes is asked for). Their modules import sqlite3, socket, hashlib and
# importlib.resources (tens of milliseconds) and are not needed by budgets kept in memory; each
# registers its own schemes, spelled only in its class. The redis package itself is imported
# only when a RedisLedger is constructed.
_BUILTIN_MODULES = (
    "budgetguard._ledger._memory",
    "budgetguard._ledger._sqlite",
    "budgetguard._ledger._redis",
    "budgetguard._ledger._cluster",
)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_registry: dict[str, type[Ledger]] = {}
_registry_lock = threading.Lock()


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _register(cls: type[Ledger]) -> None:
    schemes = cls.schemes
    if not isinstance(schemes, tuple) or not all(
        isinstance(s, str) and _SCHEME.fullmatch(s) for s in schemes
    ):
        raise TypeError(
            f"{_qualname(cls)}.schemes must be a tuple of lower-case URI schemes without '://', "
            f"such as ('mystore',); got {schemes!r}"
        )
    owner = next(k for k in cls.__mro__ if "from_uri" in vars(k))
    if owner is Ledger:
        raise TypeError(f"{_qualname(cls)} declares schemes {schemes!r} but does not define from_uri")
    if cls.__module__ not in _BUILTIN_MODULES:
        # A clash with a built-in scheme is refused now, not whenever that backend is loaded.
        _load_builtins()
    with _registry_lock:
        for scheme in schemes:
            other = _registry.get(scheme)
            # The same class defined again (a module reloaded, a notebook cell run twice) replaces it.
            if other is not None and _qualname(other) != _qualname(cls):
                raise ValueError(
                    f"ledger scheme {scheme}:// is registered to {_qualname(other)}; "
                    f"{_qualname(cls)} cannot register it too"
                )
        for scheme in schemes:
            _registry[scheme] = cls


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def _registered() -> list[tuple[str, type[Ledger]]]:
    """Every registered scheme: the built-in backends first, then the others as registered."""
    _load_builtins()
    with _registry_lock:
        entries = list(_registry.items())
    builtin = {module: rank for rank, module in enumerate(_BUILTIN_MODULES)}
    order = {scheme: index for index, (scheme, _) in enumerate(entries)}
    return sorted(entries, key=lambda e: (builtin.get(e[1].__module__, len(builtin)), order[e[0]]))


def ledger_schemes(option: str | None = None) -> tuple[str, ...]:
    """The registered URI schemes, without ``://``, built-in ones first; with ``option``, only
    the schemes whose backend takes that option (``ledger_schemes("fail_open")``)."""
    return tuple(
        scheme
        for scheme, cls in _registered()
        if option is None or option in cls.uri_options or (option in LEASE_OPTIONS and cls.supports_leases)
    )


def backend_for(uri: str) -> type[Ledger]:
    """The backend registered for the scheme of ``uri``; ``ConfigError`` if there is none."""
    if not isinstance(uri, str) or "://" not in uri:
        examples: list[str] = []
        seen: set[type[Ledger]] = set()
        for _, cls in _registered():
            if cls not in seen:
                seen.add(cls)
                examples.extend(cls.uri_examples or [f"{s}://" for s in cls.schemes])
        raise ConfigError(f"invalid store URI {uri!r}: expected one of {', '.join(examples)}")
    scheme = uri.split("://", 1)[0].lower()
    found = _registry.get(scheme)
    if found is None:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
            found = _registry.get(scheme)
            if found is not None:
                break
        else:
            known = ", ".join(f"{s}://" for s in ledger_schemes())
            raise ConfigError(f"unknown store scheme {scheme!r} in {uri!r}: known schemes are {known}")
    return found
