"""In-process ledger: the default for budgets that live as long as a ``with`` block.

One lock per ledger; operations are a few dict updates. Windowed spend is kept in the window's
buckets (see ``budgetguard._windows``), pruned as the window moves, so memory is bounded by the
window, not by the number of calls. No records are kept unless asked (``keep_records``), and then
only the newest ``keep_records`` of them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from budgetguard._ledger._base import (
    Amount,
    Hold,
    Ledger,
    Limits,
    Refused,
    Snapshot,
    SpendRecord,
    Window,
    _check_ttl,
)

__all__ = ["MemoryLedger"]


# An expired hold is remembered this long: settling it within that time still charges it (a
# slow call is billed all the same). Only holds that expire are kept, so this costs nothing
# per ordinary call.
_EXPIRED_KEPT = 86_400.0
# Expired holds are looked for at most this often: holds are only the calls in flight, so a
# sweep is cheap, and nothing per call has to be remembered after it settles.
_SWEEP_EVERY = 1.0


class _Sum:
    """Picodollars, tokens and requests, added to and taken from in place: every reserve and
    settle changes an account's sums, and building a new Amount each time would cost more."""

    __slots__ = ("picos", "requests", "tokens")

    def __init__(self) -> None:
        self.picos = self.tokens = self.requests = 0

    def add(self, amount: Amount) -> None:
        self.picos += amount.picos
        self.tokens += amount.tokens
        self.requests += amount.requests

    def sub(self, amount: Amount) -> None:
        self.picos -= amount.picos
        self.tokens -= amount.tokens
        self.requests -= amount.requests

    def amount(self) -> Amount:
        return Amount(self.picos, self.tokens, self.requests)


class _Account:
    __slots__ = ("counters", "expired", "holds", "next_sweep", "reserved", "total")

    def __init__(self) -> None:
        self.total = _Sum()  # spend ever settled (used when the budget has no window)
        self.counters: dict[str, dict[int, _Sum]] = {}  # window key -> bucket -> spend
        self.holds: dict[str, Hold] = {}  # live reservations: the calls in flight
        self.reserved = _Sum()
        # Holds whose TTL ran out before they were settled -> until when they are remembered.
        # Settling one still charges it (once); after _EXPIRED_KEPT it is forgotten.
        self.expired: dict[str, float] = {}
        self.next_sweep = 0.0


class MemoryLedger(Ledger):
    """A ledger in this process's memory; thread-safe, gone when the process ends.

    By URI: ``memory://``, or ``memory://name`` for a separate store per name; option
    ``keep_records``.
    """

    schemes = ("memory",)
    uri_examples = ("memory://",)
    uri_options = frozenset({"keep_records"})

    @classmethod
    def check_uri(cls, uri: str) -> str:
        return uri.partition("://")[2]  # the name: any text, each its own store

    @classmethod
    def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> MemoryLedger:
        cls.check_uri(uri)
        return cls(clock=clock, **options)

    def __init__(self, *, clock: Callable[[], float] = time.time, keep_records: int = 0) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self._ids = itertools.count(1)
        self._records: deque[SpendRecord] = deque(maxlen=keep_records or None)
        self._keep_records = self.keeps_records = keep_records > 0

    def _account(self, budget: str) -> _Account:
        account = self._accounts.get(budget)
        if account is None:
            account = self._accounts[budget] = _Account()
        return account

    @staticmethod
    def _spent(account: _Account, window: Window | None, now: float) -> _Sum:
        """Spend that counts now (the account's own sum when there is no window: read only)."""
        if window is None:
            return account.total
        spent = _Sum()
        counters = account.counters.get(window.key)
        if counters:
            live = window.buckets(now)
            for bucket, total in counters.items():
                if bucket in live:
                    spent.picos += total.picos
                    spent.tokens += total.tokens
                    spent.requests += total.requests
        return spent

    @staticmethod
    def _expire(account: _Account, now: float) -> None:
        if now < account.next_sweep:
            return
        account.next_sweep = now + _SWEEP_EVERY
        for hold in [h for h in account.holds.values() if h.expires_at <= now]:
            del account.holds[hold.id]
            account.reserved.sub(hold.amount)
            account.expired[hold.id] = now + _EXPIRED_KEPT
        for hold_id in [i for i, until in account.expired.items() if until <= now]:
            del account.expired[hold_id]

    def reserve(
        self, budget: str, amount: Amount, limits: Limits, window: Window | None, *, ttl: float = 600.0
    ) -> Hold | Refused:
        _check_ttl(ttl)
        with self._lock:
            now = self.clock()
            account = self._accounts.get(budget) or self._account(budget)
            if now >= account.next_sweep:
                self._expire(account, now)
            reserved = account.reserved
            if not limits.unlimited:
                spent = account.total if window is None else self._spent(account, window, now)
                kind = limits.first_exceeded_at(
                    spent.picos + reserved.picos + amount.picos,
                    spent.tokens + reserved.tokens + amount.tokens,
                    spent.requests + reserved.requests + amount.requests,
                )
                if kind is not None:
                    return Refused(kind, limits.get(kind) or 0, spent.amount(), reserved.amount(), amount)
            hold = Hold(f"m{next(self._ids)}", budget, amount, now + ttl, window)
            account.holds[hold.id] = hold
            reserved.add(amount)
            if hold.expires_at < account.next_sweep:
                account.next_sweep = hold.expires_at
            return hold

    @staticmethod
    def _finish(account: _Account, hold: Hold) -> bool:
        """Drop a hold; False if it was already settled or released (never count twice)."""
        if not hold.id:
            return True  # spend charged without a reservation: every such settle counts
        live = account.holds.pop(hold.id, None)
        if live is not None:
            account.reserved.sub(live.amount)
            return True
        # Hold ids are unique per ledger, so an id that is neither live nor expired-unsettled
        # was finished already.
        return account.expired.pop(hold.id, None) is not None

    def settle(self, hold: Hold, actual: Amount, record: SpendRecord | None = None) -> None:
        with self._lock:
            now = self.clock()
            account = self._accounts.get(hold.budget) or self._account(hold.budget)
            if now >= account.next_sweep:
                self._expire(account, now)
            if not self._finish(account, hold):
                return
            account.total.add(actual)
            window = hold.window
            if window is not None:
                counters = account.counters.setdefault(window.key, {})
                bucket = window.bucket(now)
                total = counters.get(bucket)
                if total is None:
                    oldest = window.buckets(now).start  # buckets before it can never count again
                    for stale in [b for b in counters if b < oldest]:
                        del counters[stale]
                    total = counters[bucket] = _Sum()
                total.add(actual)
            if record is not None and self._keep_records:
                self._records.append(replace(record, time=now))

    def release(self, hold: Hold) -> None:
        with self._lock:
            now = self.clock()
            account = self._account(hold.budget)
            self._expire(account, now)
            self._finish(account, hold)

    def snapshot(self, budget: str, window: Window | None) -> Snapshot:
        with self._lock:
            now = self.clock()
            account = self._account(budget)
            self._expire(account, now)
            return Snapshot(self._spent(account, window, now).amount(), account.reserved.amount())

    def records(
        self, *, budget: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[SpendRecord]:
        with self._lock:
            return [
                r
                for r in self._records
                if (budget is None or r.budget == budget)
                and (since is None or r.time >= since)
                and (until is None or r.time < until)
            ]
