"""Scopes: the trackers and budgets every API call is charged to.

A call made anywhere inside a ``with`` block (or a decorated function) is charged to every
scope active at the moment it is made. Each activation is an entry of ``budgetguard._context``
(asyncio tasks inherit the chain; plain threads do not, hence :func:`propagate`). A ``Budget``
offers the call path a small reservation interface: :meth:`Budget.reserve`,
:meth:`Budget.release`, :meth:`Budget.settle`, :meth:`Budget.room_appears_in` and the alert
hooks.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from budgetguard import _context
from budgetguard._context import Entry
from budgetguard._errors import ConfigError, SoftCapWarning
from budgetguard._ledger import (
    DEFAULT_STORE,
    Amount,
    Hold,
    Ledger,
    LimitKind,
    Limits,
    MemoryLedger,
    Refused,
    Snapshot,
    SpendRecord,
    Window,
    open_ledger,
    picos_to_usd,
    usd_to_picos,
)
from budgetguard._policies import Policy, Wait, parse_policy
from budgetguard._settings import active_config, current_settings
from budgetguard._usage import TokenCounts, Usage, UsageTotal
from budgetguard._windows import Rolling

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "Budget",
    "Scope",
    "ScopedThreadPoolExecutor",
    "Tally",
    "UsageTracker",
    "active_scopes",
    "named_budget",
    "propagate",
    "track_usage",
    "usage_of",
]

P = ParamSpec("P")
R = TypeVar("R")


def active_scopes() -> tuple[Scope, ...]:
    """The scopes a call made here would be charged to, outermost first."""
    return tuple(entry.scope for entry in _context.active_entries())


class Tally:
    """Running usage totals by model; ``usage`` sums them. Every scope is one, and so is the
    ``tracked`` attribute of a decorated function (every invocation's calls, exactly)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Running totals per model, added to in place as calls settle; the Usage values users
        # read are built from them when read. _total caches the sum (None: a call settled since).
        self._by_model: dict[str, UsageTotal] = {}
        self._total: Usage | None = Usage()
        #: Decorated functions: how many invocations started.
        self.invocations = 0

    @property
    def usage(self) -> Usage:
        """Everything settled here so far (calls in nested scopes included)."""
        total = self._total
        if total is None:
            with self._lock:
                total = self._total = sum((t.value() for t in self._by_model.values()), Usage())
        return total

    @property
    def by_model(self) -> dict[str, Usage]:
        """The same usage split by the model that was billed."""
        with self._lock:
            return {model: total.value() for model, total in self._by_model.items()}

    def add_request(
        self,
        model: str,
        counts: TokenCounts,
        units: int,
        exponent: int,
        estimated: bool,
        unpriced_model: str | None,
    ) -> None:
        """Count one settled request: its token counts and its exact cost (``units * 10**exponent``
        dollars; see ``UsageTotal.add_request``)."""
        with self._lock:
            total = self._by_model.get(model)
            if total is None:
                total = self._by_model[model] = UsageTotal()
            total.add_request(counts, units, exponent, estimated, unpriced_model)
            self._total = None

    def __str__(self) -> str:
        return str(self.usage)


class Scope(Tally):
    """Common behaviour of trackers and budgets: a name, a usage tally, entering and leaving."""

    def __init__(self, name: str | None, *, process_wide: bool = False) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"a scope name must be a non-empty string, got {name!r}")
        if not isinstance(process_wide, bool):
            raise ConfigError(f"process_wide must be True or False, got {process_wide!r}")
        super().__init__()
        self.name = name or type(self).__name__.lower()
        #: Once entered, charged for every call in the process, whatever thread or task makes it.
        self.process_wide = process_wide
        self._open_entries = 0

    def _new_entry(self, tally: Tally | None = None) -> Entry:
        """An activation of this scope (a ``with`` block or an invocation)."""
        with self._lock:
            self._open_entries += 1
        return Entry(self, tally)

    def _entry_ended(self) -> None:
        with self._lock:
            self._open_entries -= 1
            last = self._open_entries == 0
        if last:
            self._last_entry_ended()

    def _last_entry_ended(self) -> None:
        """No activation of this scope is left anywhere in the process."""

    # -- entering and leaving ------------------------------------------------------------------
    def __enter__(self) -> Any:
        if self.process_wide:
            _context.push_process(self._new_entry())
        else:
            _context.push(self._new_entry())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        entry = self._pop()
        if entry is not None:
            _context.entry_ended(entry)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        entry = self._pop()
        if entry is not None:
            await _context.entry_ended_async(entry)

    def _pop(self) -> Entry | None:
        """Leave this scope's innermost entry in the current thread or task (or the process)."""
        if self.process_wide:
            return _context.pop_process(self)
        for entry in reversed(_context.active_entries()):
            if entry.scope is self:
                _context.pop(entry)
                return entry
        return None

    # -- decorating ----------------------------------------------------------------------------
    def _for_invocation(self) -> Scope:
        """The scope one invocation of a decorated function runs in (fresh by default)."""
        return self

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Use the scope as a decorator: every invocation runs inside it.

        The wrapper's ``tracked`` attribute (a :class:`Tally`) totals all invocations so far.
        """
        if not callable(fn):
            raise TypeError(f"{type(self).__name__} decorates a function, got {fn!r}")
        if self.process_wide:
            raise ConfigError(
                "a process-wide scope covers the whole process once entered: use `with` (or "
                "__enter__ at start-up), not a decorator"
            )
        # Every call made in an invocation is credited to the function's tally through the
        # invocation's entry, so concurrent invocations of a shared scope never mix.
        total = Tally()

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gwrapper(*args: Any, **kwargs: Any) -> Any:
                entry = self._invocation(total)  # one entry for the generator's whole life
                try:
                    return (yield from _drive(fn(*args, **kwargs), entry))
                finally:
                    _context.entry_ended(entry)

            gwrapper.tracked = total  # type: ignore[attr-defined]
            return gwrapper

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agwrapper(*args: Any, **kwargs: Any) -> Any:
                entry = self._invocation(total)
                try:
                    async for item in _adrive(fn(*args, **kwargs), entry):
                        yield item
                finally:
                    await _context.entry_ended_async(entry)

            agwrapper.tracked = total  # type: ignore[attr-defined]
            return agwrapper

        if inspect.iscoroutinefunction(fn):
            afn: Callable[P, Awaitable[Any]] = fn

            @functools.wraps(fn)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                entry = self._invocation(total)
                _context.push(entry)
                try:
                    return await afn(*args, **kwargs)
                finally:
                    _context.pop(entry)
                    await _context.entry_ended_async(entry)

            awrapper.tracked = total  # type: ignore[attr-defined]
            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            entry = self._invocation(total)
            _context.push(entry)
            try:
                return fn(*args, **kwargs)
            finally:
                _context.pop(entry)
                _context.entry_ended(entry)

        wrapper.tracked = total  # type: ignore[attr-defined]
        return wrapper

    def _invocation(self, tally: Tally) -> Entry:
        with tally._lock:
            tally.invocations += 1
        return self._for_invocation()._new_entry(tally)


def _drive(gen: Generator[Any, Any, Any], entry: Entry) -> Generator[Any, Any, Any]:
    """Run a generator with its entry active only while the generator itself runs: calls the
    consumer makes between two items are not the generator's."""
    resume: Callable[[Any], Any] = gen.send
    value: Any = None
    while True:
        _context.push(entry)
        try:
            item = resume(value)
        except StopIteration as stop:
            return stop.value
        finally:
            _context.pop(entry)
        try:
            value = yield item
            resume = gen.send
        except GeneratorExit:
            _context.push(entry)
            try:
                gen.close()
            finally:
                _context.pop(entry)
            raise
        except BaseException as exc:
            resume, value = gen.throw, exc


async def _adrive(agen: AsyncGenerator[Any, Any], entry: Entry) -> AsyncGenerator[Any, Any]:
    """:func:`_drive` for async generators."""
    resume: Callable[[Any], Awaitable[Any]] = agen.asend
    value: Any = None
    while True:
        _context.push(entry)
        try:
            item = await resume(value)
        except StopAsyncIteration:
            return
        finally:
            _context.pop(entry)
        try:
            value = yield item
            resume = agen.asend
        except GeneratorExit:
            _context.push(entry)
            try:
                await agen.aclose()
            finally:
                _context.pop(entry)
            raise
        except BaseException as exc:
            resume, value = agen.athrow, exc


class UsageTracker(Scope):
    """Counts tokens, requests and cost of every OpenAI call made inside it. Never refuses."""

    def __init__(self, name: str | None = None, *, process_wide: bool = False) -> None:
        super().__init__(name or "track_usage", process_wide=process_wide)

    def _for_invocation(self) -> Scope:
        return UsageTracker(self.name)

    def __repr__(self) -> str:
        return f"UsageTracker(name={self.name!r}, usage={self.usage.to_dict()!r})"


@overload
def track_usage(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def track_usage(
    fn: None = None, /, *, name: str | None = None, process_wide: bool = False
) -> UsageTracker: ...


def track_usage(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None, process_wide: bool = False
) -> Any:
    """Tally every OpenAI SDK call made inside, at any depth.

    As a context manager: ``with track_usage() as t: ...; print(t.usage)``. As a decorator,
    bare (``@track_usage``) or with arguments (``@track_usage(name="summarize")``), on sync
    or async functions: each invocation gets its own tracker, and ``fn.usage`` totals them.
    ``process_wide=True``: once entered, every call in the process counts, whatever thread
    makes it (threads that did not inherit the context included).
    """
    if fn is not None:
        if not callable(fn):
            raise TypeError(f"track_usage takes a function or keyword arguments, got {fn!r}")
        return UsageTracker(getattr(fn, "__qualname__", None))(fn)
    return UsageTracker(name, process_wide=process_wide)


def usage_of(fn: Callable[..., Any]) -> Usage:
    """Total usage of every invocation so far of a function decorated with a scope."""
    tally = getattr(fn, "tracked", None)
    if not isinstance(tally, Tally):
        raise TypeError(f"{fn!r} is not decorated with track_usage or Budget")
    return tally.usage


# --------------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------------

_LIMIT_KINDS: tuple[LimitKind, ...] = ("usd", "tokens", "requests")


class Budget(Scope):
    """Caps on dollars, tokens and requests for everything run inside.

    Every request made inside is estimated and its worst case reserved in this budget (and in
    every enclosing one) *before* it is sent; a request that does not fit is handled by the
    ``on_exceed`` policy: ``"raise"`` (``BudgetExceeded``, nothing sent), ``"warn"``,
    ``"clamp"`` or ``"wait"``. After the response the reservation is replaced by the real cost.

    As a decorator each invocation gets a fresh budget, unless ``shared=True`` (one budget for
    all invocations). ``process_wide=True``: once entered, every call in the process is charged
    to it, whatever thread or task makes it. Persistent, windowed budgets shared by processes
    come from configuration: ``Budget.named("daily")``.
    """

    def __init__(
        self,
        max_usd: Decimal | float | str | int | None = None,
        max_tokens: int | None = None,
        max_requests: int | None = None,
        *,
        name: str | None = None,
        on_exceed: str | Policy = "raise",
        max_wait: float | None = None,
        alerts: Iterable[Decimal | float | str] = (),
        on_alert: Callable[[Budget, Decimal, Snapshot], None] | str | None = None,
        shared: bool = False,
        assume_output_tokens: int | None = None,
        window: Window | None = None,
        store: Ledger | str | None = None,
        key: str | None = None,
        hold_ttl: float = 600.0,
        auto_output_cap: bool = True,
        process_wide: bool = False,
    ) -> None:
        super().__init__("budget" if name is None else name, process_wide=process_wide)
        self.max_usd = _parse_usd(max_usd, "max_usd")
        self.max_tokens = _parse_count(max_tokens, "max_tokens")
        self.max_requests = _parse_count(max_requests, "max_requests")
        self.limits = Limits(
            None if self.max_usd is None else usd_to_picos(self.max_usd), self.max_tokens, self.max_requests
        )
        self.policy = parse_policy(on_exceed, max_wait=max_wait)
        if max_wait is not None and not isinstance(self.policy, Wait):
            raise ConfigError(f"max_wait only applies to on_exceed='wait', not {self.policy.name!r}")
        if isinstance(alerts, str | bytes) or not isinstance(alerts, Iterable):
            raise ConfigError(
                f"alerts must be a list of fractions or percentages, like ['50%', 0.8]; got {alerts!r}"
            )
        self.alerts = tuple(sorted(_parse_fraction(a) for a in alerts))
        if self.alerts and self.limits.unlimited:
            raise ConfigError("alerts are fractions of a cap: set max_usd, max_tokens or max_requests")
        if window is not None and not callable(getattr(window, "span", None)):
            raise ConfigError(
                f"window must be a window object such as budgetguard.Calendar('day') or "
                f"budgetguard.Rolling(3600), got {window!r} (budgetguard.parse_window turns '1d' into one)"
            )
        if (
            isinstance(hold_ttl, bool)
            or not isinstance(hold_ttl, int | float)
            or not (0 < hold_ttl < float("inf"))
        ):
            raise ConfigError(f"hold_ttl must be a positive number of seconds, got {hold_ttl!r}")
        if not isinstance(auto_output_cap, bool):
            raise ConfigError(f"auto_output_cap must be True or False, got {auto_output_cap!r}")
        if isinstance(on_alert, str):  # a webhook URL: posted off the call path
            from budgetguard._webhooks import WebhookAlert

            on_alert = WebhookAlert(on_alert)
        self.on_alert: Callable[[Budget, Decimal, Snapshot], None] | None = on_alert
        self.shared = shared
        #: Give a request without an output cap of its own the cap that fits, rather than
        #: refusing it because the model's maximum output does not fit.
        self.auto_output_cap = auto_output_cap
        self.assume_output_tokens = _parse_count(assume_output_tokens, "assume_output_tokens")
        self.window = window
        self.key = key
        self.hold_ttl = hold_ttl
        self._store_spec = store
        self._ledger = _open_store(store)
        self._ledger_key = self.name if key is None else f"{self.name}:{key}"
        self._alerted: set[tuple[Decimal, float]] = set()
        self._warned_over = False

    # -- construction helpers ------------------------------------------------------------------
    @classmethod
    def named(cls, name: str, key: str | None = None, *, process_wide: bool | None = None) -> Budget:
        """The budget ``name`` from the configuration (``budgetguard.configure``, else the file
        ``$BUDGETGUARD_CONFIG`` names).

        Named budgets keep their spend in the configured store under their name (and ``key``
        for keyed budgets), so every process that names them shares one cap.
        ``process_wide`` overrides the configuration's ``process_wide``.
        """
        return named_budget(name, key, process_wide=process_wide)

    def _for_invocation(self) -> Scope:
        if self.shared:
            return self
        return Budget(
            self.max_usd,
            self.max_tokens,
            self.max_requests,
            name=self.name,
            on_exceed=self.policy,
            alerts=self.alerts,
            on_alert=self.on_alert,
            assume_output_tokens=self.assume_output_tokens,
            window=self.window,
            store=self._store_spec,
            key=self.key,
            hold_ttl=self.hold_ttl,
            auto_output_cap=self.auto_output_cap,
        )

    # -- what a user reads ---------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return self._ledger.snapshot(self._ledger_key, self.window)

    @property
    def spent_usd(self) -> Decimal:
        return self.snapshot().spent.usd

    @property
    def reserved_usd(self) -> Decimal:
        return self.snapshot().reserved.usd

    @property
    def remaining_usd(self) -> Decimal | None:
        if self.max_usd is None:
            return None
        snap = self.snapshot()
        return max(Decimal(0), self.max_usd - (snap.spent + snap.reserved).usd)

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def ledger_key(self) -> str:
        return self._ledger_key

    def __repr__(self) -> str:
        caps = ", ".join(
            f"{k}={v}"
            for k, v in (
                ("max_usd", self.max_usd),
                ("max_tokens", self.max_tokens),
                ("max_requests", self.max_requests),
            )
            if v is not None
        )
        return f"Budget({caps}, name={self.name!r}, on_exceed={self.policy.name!r})"

    def _last_entry_ended(self) -> None:
        # Slices of the budget a leasing ledger holds for this process go back to the store.
        self._ledger.return_leases(self._ledger_key)

    # -- the reservation interface the call path uses -------------------------------------------
    def reserve(self, amount: Amount, *, enforce: bool = True) -> Hold | Refused:
        """Hold ``amount`` against the caps (or, ``enforce=False``, past them: a soft cap)."""
        limits = self.limits if enforce else _NO_LIMITS
        return self._ledger.reserve(self._ledger_key, amount, limits, self.window, ttl=self.hold_ttl)

    def release(self, hold: Hold) -> None:
        """Drop a hold whose call was not billed."""
        self._ledger.release(hold)

    def settle(self, hold: Hold | None, actual: Amount, record: SpendRecord | None) -> None:
        """Replace ``hold`` (None: spend that was not reserved) with what the call cost."""
        if hold is None:
            hold = Hold("", self._ledger_key, Amount(), 0.0, self.window)
        self._ledger.settle(hold, actual, record)

    def room_appears_in(self, refused: Refused) -> float | None:
        """Seconds until room for a refused request can appear by itself (see ``Refusal``)."""
        kind = refused.kind
        if refused.reserved.get(kind) > 0:
            return 0.0  # holds in flight may be released at any moment
        window = self.window
        if window is None:
            return None
        if isinstance(window, Rolling):
            return 0.0  # old spend leaves it continuously
        now = self._ledger.clock()
        return max(0.0, window.span(now)[1] - now)

    def check_alerts(self) -> None:
        """Call back once for each alert threshold crossed in the current window (after
        settling). A threshold is crossed when spend reaches that fraction of any cap."""
        if not self.alerts:
            return
        snap = self.snapshot()
        fractions = [
            Decimal(snap.spent.get(kind)) / limit
            for kind in _LIMIT_KINDS
            if (limit := self.limits.get(kind))  # a cap of 0 refuses everything; no alert needed
        ]
        if not fractions:
            return
        fraction = max(fractions)
        span = self.window.span(self._ledger.clock())[0] if self.window is not None else 0.0
        for threshold in self.alerts:
            if fraction >= threshold and (threshold, span) not in self._alerted:
                with self._lock:
                    if (threshold, span) in self._alerted:
                        continue
                    self._alerted.add((threshold, span))
                if self.on_alert is not None:
                    self.on_alert(self, threshold, snap)

    def soft_cap_crossed(self, refused: Refused) -> None:
        """A ``warn`` budget lets a request through past its cap: warn once per window."""
        span = self.window.span(self._ledger.clock())[0] if self.window is not None else 0.0
        marker = (Decimal(-1), span)
        with self._lock:
            first = marker not in self._alerted
            self._alerted.add(marker)
        if not first:
            return
        warnings.warn(
            f"budget {self.name!r} passed its soft {refused.kind} cap of "
            f"{_show(refused.kind, refused.limit)}; the request was sent anyway (on_exceed='warn')",
            SoftCapWarning,
            stacklevel=2,
        )
        # The 100% alert, once per window, shared with an alerts threshold of 1.0.
        with self._lock:
            full = (Decimal(1), span)
            first_full = full not in self._alerted
            self._alerted.add(full)
        if first_full and self.on_alert is not None:
            self.on_alert(self, Decimal(1), self.snapshot())


_NO_LIMITS = Limits()


def _scope_entry_ended(entry: Entry) -> None:
    entry.scope._entry_ended()


async def _scope_entry_ended_async(entry: Entry) -> None:
    entry.scope._entry_ended()


_context.on_entry_end(_scope_entry_ended, _scope_entry_ended_async)


def named_budget(name: str, key: str | None = None, *, process_wide: bool | None = None) -> Budget:
    """The configured budget ``name`` (one object per name, key and reach per configuration)."""
    config = active_config()  # may load $BUDGETGUARD_CONFIG, which installs new settings
    settings = current_settings()
    if name not in config.budgets:
        known = ", ".join(sorted(config.budgets))
        raise ConfigError(
            f"no budget named {name!r} is configured" + (f" (configured: {known})" if known else "")
        )
    spec = config.budgets[name]
    if spec.keyed and key is None:
        raise ConfigError(f"budget {name!r} is keyed (one cap per key): use Budget.named({name!r}, key=...)")
    if not spec.keyed and key is not None:
        raise ConfigError(f"budget {name!r} is not keyed; set keyed: true in the config to use key={key!r}")
    if process_wide is None:
        process_wide = spec.process_wide
    with _named_lock:
        named = _named_budgets(settings)
        budget = named.get((name, key, process_wide))
        if budget is None:
            budget = Budget(
                spec.max_usd,
                spec.max_tokens,
                spec.max_requests,
                name=name,
                on_exceed=spec.on_exceed,
                max_wait=spec.max_wait,
                alerts=spec.alerts,
                on_alert=spec.on_alert,
                window=spec.window,
                store=_named_store(spec, named),
                key=key,
                hold_ttl=spec.hold_ttl,
                shared=True,
                auto_output_cap=spec.auto_output_cap,
                process_wide=process_wide,
            )
            named.put((name, key, process_wide), budget)
        return budget


def _named_store(spec: Any, named: _NamedBudgets) -> Ledger | str:
    """The store a configured budget opens: with its options (fail-open, leases) if it has any."""
    options = dict(spec.store_options)
    if spec.fail_open:
        options["fail_open"] = True
    if options:
        return open_ledger(spec.store, **options)
    return named.memory if spec.store == DEFAULT_STORE else spec.store


class _NamedBudgets:
    """The objects ``Budget.named`` handed out under one configuration.

    Bounded: the most recently used ``KEEP`` are kept, and any other only while something still
    uses it (a weak reference), so a keyed budget with 100,000 keys does not keep 100,000
    objects. A budget's spend lives in its store, not in the object, so one made again for the
    same name and key carries on where the last left off; in-memory named budgets of this
    configuration share ``memory`` for that reason.
    """

    KEEP = 1024

    def __init__(self) -> None:
        self.memory = MemoryLedger()
        self._live: weakref.WeakValueDictionary[tuple[str, str | None, bool], Budget] = (
            weakref.WeakValueDictionary()
        )
        self._recent: OrderedDict[tuple[str, str | None, bool], Budget] = OrderedDict()

    def get(self, key: tuple[str, str | None, bool]) -> Budget | None:
        budget = self._live.get(key)
        if budget is not None:
            self.put(key, budget)
        return budget

    def put(self, key: tuple[str, str | None, bool], budget: Budget) -> None:
        self._live[key] = budget
        self._recent[key] = budget
        self._recent.move_to_end(key)
        if len(self._recent) > self.KEEP:
            self._recent.popitem(last=False)

    def __len__(self) -> int:
        return len(self._live)


_named_lock = threading.Lock()
_named_for: tuple[object, _NamedBudgets] | None = None


def _named_budgets(settings: object) -> _NamedBudgets:
    """The named budgets of the configuration in force (a new configuration starts afresh)."""
    global _named_for
    current = _named_for
    if current is None or current[0] is not settings:
        current = _named_for = (settings, _NamedBudgets())
    return current[1]


def _show(kind: str, value: int) -> str:
    return f"${picos_to_usd(value)}" if kind == "usd" else f"{value} {kind}"


def _open_store(store: Ledger | str | None) -> Ledger:
    if store is None or store == DEFAULT_STORE:
        # A private in-memory ledger: this budget's spend lives as long as the object.
        return MemoryLedger()
    if isinstance(store, Ledger):
        return store
    return open_ledger(store)


def _parse_usd(value: Decimal | float | str | int | None, what: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number of dollars, got {value!r}")
    try:
        # str() first: Decimal(0.1) would carry the float's binary error into the cap.
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except Exception:
        raise ConfigError(f"{what} must be a number of dollars, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{what} must be a finite amount >= 0, got {value!r}")
    return amount


def _parse_count(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{what} must be a whole number >= 0, got {value!r}")
    return value


def _parse_fraction(value: Decimal | float | str) -> Decimal:
    text = str(value).strip()
    try:
        fraction = Decimal(text[:-1]) / 100 if text.endswith("%") else Decimal(text)
    except Exception:
        raise ConfigError(f"an alert threshold must be a fraction like 0.8 or '80%', got {value!r}") from None
    if not (0 < fraction <= 10):
        raise ConfigError(f"an alert threshold must be above 0 (0.8 means 80%), got {value!r}")
    return fraction


# --------------------------------------------------------------------------------------------
# Carrying scopes into threads
# --------------------------------------------------------------------------------------------


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """Bind ``fn`` to the current scopes, for running it in a thread.

    ``threading.Thread`` and ``ThreadPoolExecutor`` do not copy contextvars, so calls made in
    their workers would not be charged. ``pool.submit(propagate(work), x)`` fixes that.
    """
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        # Each run gets its own copy: one context cannot be entered by two threads at once.
        return context.copy().run(fn, *args, **kwargs)

    return bound


class ScopedThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the scopes active when they were submitted."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Any:
        return super().submit(propagate(fn), *args, **kwargs)
