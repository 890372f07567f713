"""Leases: reserve and settle in this process's memory against a slice of a budget held in a store.

``LeasingLedger(inner, ...)`` (or ``open_ledger(uri, lease_usd=...)``) wraps a shared store (Redis,
Redis Cluster, SQLite) behind the same ``Ledger`` interface. A budget's first capped reservation
takes a *lease*: a hold in the store, like any call's, of the call plus a slice of the budget, in
one round trip that also checks the caps. Later reservations that fit in what the lease has left
are granted in memory; settles are counted in memory. When a call does not fit, or the lease is
old, the next round trip (``renew_lease``, one atomic script) settles the spend counted since the
last one (with its records), keeps what is in flight and the unused slice reserved, and adds a new
slice as far as the caps allow; near the cap the slice shrinks to what is left, and a call that
does not fit even then is refused with the store's numbers. The sum of every process's leases is
a sum of holds, so the cap holds globally, as it does without leases.

When spend becomes visible to other processes: a background thread flushes settled spend and its
records to the store every ``flush`` seconds (default 0.1; ``flush=0`` writes each settle at once,
one round trip per call instead of two), and on every renewal, on ``return_leases()`` (the end of
a scope), ``records()`` and ``close()`` (at interpreter exit too). Spend is added to the window
bucket of the moment it was settled, so windows count it as without leases, only later.

What a process holds comes back: a lease unused for ``idle`` seconds (default 2) with nothing in
flight is returned by the thread; ``return_leases`` and exit return it at once; a process that
dies (SIGKILL) stops refreshing its lease, which then expires like any hold: at most the hold TTL
plus ``LEASE_EXTRA`` seconds after its last renewal. A lease outlives every call granted in it by
at least the call's hold TTL (a call is granted locally only while ``now + ttl`` is before the
lease's expiry; the thread extends a lease that has calls in flight), so a slow call stays covered.

The cost: a slice held by one process is reserved for it and unavailable to the others until it is
used, returned or expired, so near the cap a call can be refused while other processes still hold
unused slices (``Refused.reserved`` includes them; a ``Wait`` policy waits for them). With ``P``
processes at most ``P`` slices are stranded; the default slice is ``DEFAULT_FRACTION`` of each cap.
A process killed with SIGKILL loses the spend it settled since its last flush (at most ``flush``
seconds of it), as a call in flight at a SIGKILL is never settled with any store.

A budget gets a lease once it is busy in this process: from its second reservation within ``hot``
seconds (default 1). Until then a reservation goes to the store as it would without leases (a
hold there, settled there at once), so budgets that each see a call now and then (10,000 per-user
budgets) cost what they cost without leases, and hold no slice. Reservations with no cap (a soft
cap's ``enforce=False``) are granted in memory without a lease.
Snapshots read the store and correct it with this process's state: its own leases are replaced by
its calls in flight, and its unflushed spend is added. Other processes see the lease (``reserved``)
and spend as of the last flush.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import math
import os
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from budgetguard._errors import BudgetGuardWarning, ConfigError, StoreError
from budgetguard._ledger._base import (
    Amount,
    Hold,
    LeaseGrant,
    LeaseRenewal,
    Ledger,
    Limits,
    Refused,
    Snapshot,
    SpendRecord,
    Window,
    _check_ttl,
    usd_to_picos,
)

__all__ = ["DEFAULT_FRACTION", "LEASE_EXTRA", "LeasingLedger"]

#: A capped dimension without a slice of its own leases this fraction of its cap at a time.
DEFAULT_FRACTION = Decimal("0.01")
#: Seconds a lease lasts beyond the hold TTL of the calls granted in it.
LEASE_EXTRA = 30.0
# An expired local hold is remembered this long: settling it still charges it (once).
_EXPIRED_KEPT = 86_400.0
_SWEEP_EVERY = 1.0
_ZERO = Amount()


class _State:
    """One budget and window in this process: its lease and what was counted against it."""

    __slots__ = (
        "budget",
        "capped",
        "expires_at",
        "flight",
        "io",
        "last_reserve",
        "last_used",
        "lease",
        "lease_id",
        "pending",
        "records",
        "renewing",
        "rp",
        "rr",
        "rt",
        "sp",
        "sr",
        "st",
        "ttl",
        "unbacked",
        "unsent",
        "window",
    )

    def __init__(self, budget: str, window: Window | None) -> None:
        self.budget = budget
        self.window = window
        self.lease_id = ""
        self.lease = _ZERO
        self.expires_at = 0.0
        self.ttl = 0.0
        self.capped = (False, False, False)
        # In flight and granted against the lease (r), settled against it and not flushed (s).
        self.rp = self.rt = self.rr = 0
        self.sp = self.st = self.sr = 0
        self.unbacked = _ZERO  # in flight without a lease (no cap, or granted by fail-open)
        self.flight = 0  # local holds in flight
        self.pending: dict[int | None, list[int]] = {}  # bucket -> spend not flushed yet
        self.records: list[tuple[SpendRecord, Amount, float]] = []
        self.last_used = 0.0
        self.last_reserve = -math.inf  # when a reservation last went to the store directly
        self.renewing = False
        self.unsent: _Request | None = None  # a renewal whose outcome is unknown (store error)
        self.io = threading.Lock()  # one round trip at a time per state

    def idle(self) -> bool:
        return not self.flight and not self.pending and not self.records and self.unsent is None


@dataclass(frozen=True, slots=True)
class _Request:
    renewal: LeaseRenewal
    flushed_backed: Amount  # the part of the flushed spend that had been counted in the lease


class LeasingLedger(Ledger):
    """A ``Ledger`` that leases slices of each budget from ``inner`` (a store whose backend
    ``supports_leases``) and reserves and settles calls against them in memory.

    ``usd`` / ``tokens`` / ``requests``: the slice of each capped dimension (dollars, tokens,
    requests); a capped dimension without one leases ``fraction`` of its cap (default
    ``DEFAULT_FRACTION``). ``flush``: seconds between writes of settled spend (0: each settle is
    written at once). ``idle``: seconds after which an unused lease is returned. ``hot``: a budget
    is leased from its second reservation within this many seconds (``math.inf``: from the
    first). ``close()`` (and interpreter exit) return every lease; the inner ledger stays open.
    """

    def __init__(
        self,
        inner: Ledger,
        *,
        usd: Decimal | float | str | int | None = None,
        tokens: int | None = None,
        requests: int | None = None,
        fraction: Decimal | float | str | None = None,
        flush: float = 0.1,
        idle: float = 2.0,
        hot: float = 1.0,
    ) -> None:
        if not type(inner).supports_leases:
            raise ConfigError(f"{type(inner).__name__} does not support leases")
        self.inner = inner
        self.keeps_records = inner.keeps_records
        self._slice_picos = None if usd is None else usd_to_picos(_decimal(usd, "lease_usd"))
        self._slice_tokens = _count(tokens, "lease_tokens")
        self._slice_requests = _count(requests, "lease_requests")
        self.fraction = DEFAULT_FRACTION if fraction is None else _decimal(fraction, "lease_fraction")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"lease_fraction must be a fraction of the cap in (0, 1], got {fraction!r}")
        self.flush_interval = _seconds(flush, "lease_flush")
        self.idle = _seconds(idle, "idle")
        if isinstance(hot, bool) or not isinstance(hot, int | float) or not hot >= 0:
            raise ConfigError(f"hot must be a number of seconds >= 0 (or math.inf), got {hot!r}")
        self.hot = float(hot)
        self._reset()
        _ledgers.add(self)

    @staticmethod
    def check_lease_options(options: dict[str, object]) -> None:
        """Validate ``open_ledger``'s lease options (``LEASE_OPTIONS``); ``ConfigError`` if bad."""
        LeasingLedger._settings(options)

    @staticmethod
    def _settings(options: dict[str, object]) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for name, value in options.items():
            if name == "lease_usd":
                settings["usd"] = _decimal(value, name)
            elif name in ("lease_tokens", "lease_requests"):
                settings[name.removeprefix("lease_")] = _count(value, name)
            elif name == "lease_fraction":
                fraction = _decimal(value, name)
                if fraction > 1:
                    raise ConfigError(
                        f"lease_fraction must be a fraction of the cap in (0, 1], got {value!r}"
                    )
                settings["fraction"] = fraction
            elif name == "lease_flush":
                settings["flush"] = _seconds(value, name)
            else:
                raise ConfigError(f"unknown lease option {name!r}")
        return settings

    @classmethod
    def from_options(cls, inner: Ledger, options: dict[str, object]) -> LeasingLedger:
        """A leasing ledger over ``inner`` from ``open_ledger``'s lease options."""
        return cls(inner, **cls._settings(options))

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (the parent's leases are not its own)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._uid = "lease-" + os.urandom(6).hex()
        self._ids = itertools.count(1)
        self._states: dict[tuple[str, str | None], _State] = {}
        self._inflight: dict[str, tuple[_State, Amount, bool, float]] = {}  # id -> ..., expires at
        self._expired: dict[str, float] = {}  # id -> remembered until
        self._next_sweep = 0.0
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned = False

    # The clock is the inner store's: windows and hold expiries are compared with the store's.
    @property
    def clock(self) -> Callable[[], float]:
        return self.inner.clock

    @clock.setter
    def clock(self, value: Callable[[], float]) -> None:
        self.inner.clock = value

    @property
    def fail_open(self) -> bool:
        return bool(getattr(self.inner, "fail_open", False))

    # -- local bookkeeping (under self._lock) ------------------------------------------------

    def _state(self, budget: str, window: Window | None) -> _State:
        key = (budget, None if window is None else window.key)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State(budget, window)
        return state

    def _slice(self, limits: Limits) -> Amount:
        return Amount(
            _slice_of(self._slice_picos, limits.picos, self.fraction),
            _slice_of(self._slice_tokens, limits.tokens, self.fraction),
            _slice_of(self._slice_requests, limits.requests, self.fraction),
        )

    @staticmethod
    def _fits(state: _State, amount: Amount, limits: Limits, now: float, ttl: float) -> bool:
        if state.renewing or not state.lease_id or state.unsent is not None or now + ttl > state.expires_at:
            return False
        lease = state.lease
        return not (
            (limits.picos is not None and state.rp + state.sp + amount.picos > lease.picos)
            or (limits.tokens is not None and state.rt + state.st + amount.tokens > lease.tokens)
            or (limits.requests is not None and state.rr + state.sr + amount.requests > lease.requests)
        )

    def _grant(self, state: _State, amount: Amount, now: float, ttl: float, *, backed: bool) -> Hold:
        hold = Hold(f"{self._uid}.{next(self._ids)}", state.budget, amount, now + ttl, state.window)
        self._inflight[hold.id] = (state, amount, backed, hold.expires_at)
        if backed:
            state.rp += amount.picos
            state.rt += amount.tokens
            state.rr += amount.requests
        else:
            state.unbacked = state.unbacked + amount
        state.flight += 1
        state.last_used = now
        return hold

    def _finish(self, state: _State, amount: Amount, backed: bool) -> None:
        if backed:
            state.rp -= amount.picos
            state.rt -= amount.tokens
            state.rr -= amount.requests
        else:
            state.unbacked = state.unbacked - amount
        state.flight -= 1

    def _sweep(self, now: float) -> None:
        """Local holds past their TTL stop counting (as a store's do); remembered to be charged."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY
        for hold_id, (state, amount, backed, expires_at) in list(self._inflight.items()):
            if expires_at <= now:
                del self._inflight[hold_id]
                self._finish(state, amount, backed)
                self._expired[hold_id] = now + _EXPIRED_KEPT
        for hold_id in [i for i, until in self._expired.items() if until <= now]:
            del self._expired[hold_id]

    def _add_spend(self, state: _State, actual: Amount, now: float, record: SpendRecord | None) -> None:
        window = state.window
        bucket = None if window is None else window.bucket(now)
        spend = state.pending.get(bucket)
        if spend is None:
            spend = state.pending[bucket] = [0, 0, 0]
        spend[0] += actual.picos
        spend[1] += actual.tokens
        spend[2] += actual.requests
        if record is not None and self.keeps_records:
            state.records.append((record, actual, now))
        state.last_used = now

    def _request(
        self,
        state: _State,
        now: float,
        *,
        want: Amount,
        target: Amount,
        limits: Limits,
        keep_only: bool = False,
    ) -> _Request:
        """Detach what is to be flushed and describe the round trip; marks the state renewing."""
        capped = state.capped
        lease = state.lease
        keep = _masked(Amount(state.rp, state.rt, state.rr), capped)
        carry = (
            _ZERO
            if keep_only
            else _masked(
                Amount(
                    max(0, lease.picos - state.rp - state.sp),
                    max(0, lease.tokens - state.rt - state.st),
                    max(0, lease.requests - state.rr - state.sr),
                ),
                capped,
            )
        )
        flushed_backed = Amount(state.sp, state.st, state.sr)
        state.sp = state.st = state.sr = 0
        flush = tuple((bucket, Amount(*spend)) for bucket, spend in state.pending.items())
        records = tuple(state.records)
        state.pending = {}
        state.records = []
        state.renewing = True
        renewal = LeaseRenewal(
            budget=state.budget,
            window=state.window,
            old_id=state.lease_id,
            new_id=f"{self._uid}.L{next(self._ids)}",
            expires_at=now + state.ttl + LEASE_EXTRA,
            flush=flush,
            records=records,
            keep=keep,
            carry=carry,
            want=_masked(want, capped),
            target=_masked(target, capped),
            limits=limits,
        )
        return _Request(renewal, flushed_backed)

    def _apply(self, state: _State, request: _Request, grant: LeaseGrant) -> None:
        renewal = request.renewal
        state.renewing = False
        state.unsent = None
        state.lease = grant.amount
        state.lease_id = renewal.new_id if grant.amount != _ZERO else ""
        state.expires_at = renewal.expires_at

    def _failed(self, state: _State, request: _Request) -> None:
        """A round trip failed: the store may or may not have applied it, so the same request
        (same ids, same spend) is sent again before anything else (the store applies it once)."""
        state.renewing = False
        state.unsent = request

    # -- round trips (never under self._lock) ------------------------------------------------

    def _round_trip(self, state: _State, request: _Request) -> LeaseGrant:
        """Send ``request`` (state.io held); on a store error the state keeps it as unsent."""
        try:
            grant = self.inner.renew_lease(request.renewal)
        except BaseException:
            with self._lock:
                self._failed(state, request)
            raise
        with self._lock:
            self._apply(state, request, grant)
        return grant

    def _resend(self, state: _State) -> None:
        """Send again a round trip whose outcome is unknown (state.io held)."""
        unsent = state.unsent
        if unsent is not None:
            with self._lock:
                state.renewing = True
            self._round_trip(state, unsent)

    def _renew(self, state: _State, *, keep_only: bool = False, extend: bool = False) -> None:
        """Flush the state's spend (state.io held); ``keep_only``: shrink its lease to the calls in
        flight; ``extend``: renew its lease (a later expiry) even with nothing to flush."""
        self._resend(state)
        with self._lock:
            if not state.pending and not state.records and not (state.lease_id and (keep_only or extend)):
                return
            request = self._request(
                state, self.clock(), want=_ZERO, target=_ZERO, limits=Limits(), keep_only=keep_only
            )
        self._round_trip(state, request)

    # -- the Ledger interface ----------------------------------------------------------------

    def reserve(
        self, budget: str, amount: Amount, limits: Limits, window: Window | None, *, ttl: float = 600.0
    ) -> Hold | Refused:
        _check_ttl(ttl)
        self._check_fork()
        with self._lock:
            now = self.clock()
            self._sweep(now)
            state = self._state(budget, window)
            if limits.unlimited:
                return self._grant(state, amount, now, ttl, backed=False)
            if self._fits(state, amount, limits, now, ttl):
                return self._grant(state, amount, now, ttl, backed=True)
            state.last_used = now  # not idle: the thread leaves it be
            if not state.lease_id and now - state.last_reserve > self.hot:
                # Not busy here (no reservation of this budget within ``hot`` seconds): a lease
                # would cost more round trips than it saves. The store holds this one.
                state.last_reserve = now
                direct = True
            else:
                direct = False
        self._start_thread()
        if direct:
            return self.inner.reserve(budget, amount, limits, window, ttl=ttl)
        key = (budget, None if window is None else window.key)
        while True:
            with self._lock:
                # The thread drops states idle for a while; a reservation that waited that long
                # puts its state back (or takes the one made since).
                state = self._states.setdefault(key, state)
            with state.io:
                try:
                    self._resend(state)
                    with self._lock:
                        now = self.clock()
                        if self._fits(state, amount, limits, now, ttl):
                            return self._grant(state, amount, now, ttl, backed=True)
                        state.capped = (
                            limits.picos is not None,
                            limits.tokens is not None,
                            limits.requests is not None,
                        )
                        state.ttl = max(state.ttl, ttl)
                        request = self._request(
                            state, now, want=amount, target=amount + self._slice(limits), limits=limits
                        )
                    grant = self._round_trip(state, request)
                except StoreError as exc:
                    if not self.fail_open:
                        raise
                    warnings.warn(
                        f"{exc}; budget {budget!r} fails open: this call was allowed without checking "
                        "the shared cap (its spend is written when the store answers again)",
                        BudgetGuardWarning,
                        stacklevel=2,
                    )
                    with self._lock:
                        return self._grant(state, amount, self.clock(), ttl, backed=False)
                with self._lock:
                    now = self.clock()
                    if grant.refused is not None:
                        refused = grant.refused
                        local = self._local_spend(state, window, now)
                        in_flight = Amount(state.rp, state.rt, state.rr) + state.unbacked
                        return Refused(
                            refused.kind,
                            refused.limit,
                            refused.spent + local,
                            refused.reserved + in_flight,
                            amount,
                        )
                    if self._fits(state, amount, limits, now, ttl):
                        return self._grant(state, amount, now, ttl, backed=True)
            # Another thread used the new slice first, or a retried round trip had been applied
            # already (its outcome unknown): look again with what is left.

    def settle(self, hold: Hold, actual: Amount, record: SpendRecord | None = None) -> None:
        self._check_fork()
        with self._lock:
            now = self.clock()
            self._sweep(now)
            entry = self._inflight.pop(hold.id, None) if hold.id else None
            if entry is not None:
                state, amount, backed, _ = entry
                self._finish(state, amount, backed)
                if backed:
                    state.sp += actual.picos
                    state.st += actual.tokens
                    state.sr += actual.requests
            elif not hold.id:
                state = self._state(hold.budget, hold.window)  # spend without a reservation
            elif hold.id in self._expired:
                del self._expired[hold.id]  # expired first: still charged, once
                state = self._state(hold.budget, hold.window)
            elif hold.id.startswith(self._uid + "."):
                return  # settled or released already
            else:
                state = None  # another ledger's hold
            if state is not None:
                self._add_spend(state, actual, now, record)
        if state is None:
            self.inner.settle(hold, actual, record)
            return
        if self.flush_interval == 0 or self._closed:
            with state.io:
                self._renew(state)
        else:
            self._start_thread()

    def release(self, hold: Hold) -> None:
        self._check_fork()
        with self._lock:
            entry = self._inflight.pop(hold.id, None) if hold.id else None
            if entry is not None:
                self._finish(*entry[:3])
                return
            if not hold.id or hold.id.startswith(self._uid + "."):
                self._expired.pop(hold.id, None)
                return
        self.inner.release(hold)

    def _local_spend(self, state: _State | None, window: Window | None, now: float) -> Amount:
        """Spend this state counted and has not flushed, that counts in ``window`` now."""
        if state is None:
            return _ZERO
        live = None if window is None else window.buckets(now)
        total = [0, 0, 0]
        pendings = [state.pending]
        if state.unsent is not None:
            pendings.append({b: [a.picos, a.tokens, a.requests] for b, a in state.unsent.renewal.flush})
        for pending in pendings:
            for bucket, spend in pending.items():
                if live is None or (bucket is not None and bucket in live):
                    total[0] += spend[0]
                    total[1] += spend[1]
                    total[2] += spend[2]
        return Amount(*total)

    def snapshot(self, budget: str, window: Window | None) -> Snapshot:
        self._check_fork()
        with self._lock:
            main = self._states.get((budget, None if window is None else window.key))
        with main.io if main is not None else contextlib.nullcontext():
            snap = self.inner.snapshot(budget, window)
            with self._lock:
                now = self.clock()
                self._sweep(now)
                own = _ZERO
                in_flight = _ZERO
                spent = snap.spent
                for (name, key), state in self._states.items():
                    if name != budget:
                        continue
                    if state.lease_id and now < state.expires_at:
                        own = own + state.lease
                    in_flight = in_flight + Amount(state.rp, state.rt, state.rr) + state.unbacked
                    if window is None:
                        spent = spent + self._local_spend(state, None, now)
                    elif key == window.key:
                        spent = spent + self._local_spend(state, window, now)
        reserved = snap.reserved - own
        reserved = Amount(max(0, reserved.picos), max(0, reserved.tokens), max(0, reserved.requests))
        return Snapshot(spent, reserved + in_flight)

    def records(
        self, *, budget: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[SpendRecord]:
        self.flush(budget)
        return self.inner.records(budget=budget, since=since, until=until)

    # -- flushing and returning --------------------------------------------------------------

    def _states_of(self, budget: str | None) -> list[_State]:
        with self._lock:
            return [s for (name, _), s in self._states.items() if budget is None or name == budget]

    def flush(self, budget: str | None = None) -> None:
        """Write the spend and records counted here (of ``budget``'s leases, or all) to the store now.

        ``budget`` is a ledger key (a budget's name, or ``name:key``); records name the budget,
        so ``records(budget=...)`` flushes every lease whose key is that budget or starts with it."""
        self._check_fork()
        errors: list[BaseException] = []
        for state in self._states_of(None):
            if budget is not None and state.budget != budget and not state.budget.startswith(budget + ":"):
                continue
            with state.io:
                try:
                    self._resend(state)
                    with self._lock:
                        dirty = bool(state.pending or state.records)
                    if dirty:
                        self._renew(state)
                except StoreError as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]

    def return_leases(self, budget: str | None = None) -> None:
        """Flush, and give back every lease of ``budget`` (a ledger key; None: all) beyond the calls
        still in flight in it. The next reservation takes a new lease.

        Never raises: when the store does not answer, a ``BudgetGuardWarning`` says so, the spend
        stays counted here and the flushing thread writes it when the store answers (or the lease
        expires on its own)."""
        self._check_fork()
        for state in self._states_of(budget):
            with state.io:
                try:
                    self._renew(state, keep_only=True)
                except StoreError as exc:
                    warnings.warn(
                        f"budgetguard could not return a lease of budget {state.budget!r} or write the "
                        f"spend counted since the last flush: {exc}",
                        BudgetGuardWarning,
                        stacklevel=2,
                    )

    def close(self) -> None:
        """Return every lease (writing the spend counted here) and stop the flushing thread."""
        if self._pid != os.getpid():
            return
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        self.return_leases()

    # -- the background thread -------------------------------------------------------------------

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        self._reset()

    def _start_thread(self) -> None:
        if self._thread is not None or self._closed or self.flush_interval == 0:
            return
        with self._wake:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(
                target=_background, args=(weakref.ref(self),), name="budgetguard-leases", daemon=True
            )
            self._thread = thread
        thread.start()

    def _tick(self) -> bool:
        """One round of the thread's work; False once closed."""
        with self._wake:
            if self._closed:
                return False
            self._wake.wait(self.flush_interval)
            if self._closed:
                return False
        now = self.clock()
        with self._lock:
            self._sweep(now)
            work: list[tuple[_State, bool | None]] = []  # give back (None: extend)
            for key, state in list(self._states.items()):
                if state.renewing:
                    continue
                if state.pending or state.records or state.unsent is not None:
                    work.append((state, False))
                elif state.lease_id:
                    if not state.flight and now - state.last_used >= self.idle:
                        work.append((state, True))  # idle: give it back
                    elif state.expires_at - now < state.ttl + LEASE_EXTRA / 2:
                        work.append((state, None))  # in use: extend it
                elif state.idle() and now - state.last_used >= self.idle:
                    del self._states[key]
        for state, give_back in work:
            if not state.io.acquire(blocking=False):
                continue  # a reservation is renewing it
            try:
                self._renew(state, keep_only=give_back is True, extend=give_back is None)
                self._warned = False
            except StoreError as exc:
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"{exc}; the spend counted here is kept and written when the store answers",
                        BudgetGuardWarning,
                        stacklevel=1,
                    )
            except Exception as exc:  # the thread must not die: report and carry on
                warnings.warn(f"budgetguard lease thread: {exc!r}", BudgetGuardWarning, stacklevel=1)
            finally:
                state.io.release()
        return True

    def __repr__(self) -> str:
        return f"LeasingLedger({self.inner!r})"


def _background(ref: weakref.ReferenceType[LeasingLedger]) -> None:
    while True:
        ledger = ref()
        if ledger is None or not ledger._tick():
            return
        del ledger


# -- helpers ------------------------------------------------------------------------------------


def _masked(amount: Amount, capped: tuple[bool, bool, bool]) -> Amount:
    return Amount(
        amount.picos if capped[0] else 0,
        amount.tokens if capped[1] else 0,
        amount.requests if capped[2] else 0,
    )


def _slice_of(explicit: int | None, cap: int | None, fraction: Decimal) -> int:
    if cap is None:
        return 0
    if explicit is not None:
        return explicit
    return max(1, int(cap * fraction))


def _decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)  # type: ignore[arg-type]
    except Exception:
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise ConfigError(f"{what} must be a positive number, got {value!r}")
    return number


def _count(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{what} must be a whole number > 0, got {value!r}")
    return value


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ConfigError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return float(value)


# Every leasing ledger of this process: returned at exit; reset in a forked child.
_ledgers: weakref.WeakSet[LeasingLedger] = weakref.WeakSet()


@atexit.register
def _return_all_at_exit() -> None:
    for ledger in list(_ledgers):
        with contextlib.suppress(Exception):
            ledger.close()


def _after_fork_in_child() -> None:
    for ledger in list(_ledgers):
        ledger._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
