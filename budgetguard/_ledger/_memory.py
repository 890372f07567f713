"""In-process ledger: the default for budgets that live as long as a ``with`` block.

One lock per ledger; operations are a few dict updates. Spend in windows is kept as
(time, amount) entries pruned as the window moves, so memory is bounded by the window,
not by the number of calls. No records are kept unless asked (``keep_records``), and then
only the newest ``keep_records`` of them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable

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


class _Account:
    __slots__ = ("entries", "holds", "reserved", "total")

    def __init__(self) -> None:
        self.total = Amount()  # spend ever settled (used when the budget has no window)
        self.entries: deque[tuple[float, Amount]] = deque()  # settled spend by time, for windows
        self.holds: dict[str, Hold] = {}
        self.reserved = Amount()


class MemoryLedger(Ledger):
    def __init__(self, *, clock: Callable[[], float] = time.time, keep_records: int = 0) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self._ids = itertools.count(1)
        self._records: deque[SpendRecord] = deque(maxlen=keep_records or None)
        self._keep_records = keep_records > 0
        self._windowed: set[str] = set()

    def _account(self, budget: str) -> _Account:
        account = self._accounts.get(budget)
        if account is None:
            account = self._accounts[budget] = _Account()
        return account

    def _spent(self, account: _Account, window: Window | None, now: float) -> Amount:
        if window is None:
            return account.total
        start, end = window.span(now)
        entries = account.entries
        while entries and entries[0][0] < start:  # older spend can never count again
            entries.popleft()
        spent = Amount()
        for at, amount in entries:
            if at < end:
                spent = spent + amount
        return spent

    def _expire(self, account: _Account, now: float) -> None:
        expired = [h for h in account.holds.values() if h.expires_at <= now]
        for hold in expired:
            del account.holds[hold.id]
            account.reserved = account.reserved - hold.amount

    def reserve(
        self, budget: str, amount: Amount, limits: Limits, window: Window | None, *, ttl: float = 600.0
    ) -> Hold | Refused:
        _check_ttl(ttl)
        with self._lock:
            now = self.clock()
            account = self._account(budget)
            if window is not None:
                self._windowed.add(budget)
            if account.holds:
                self._expire(account, now)
            spent = self._spent(account, window, now) if not limits.unlimited else Amount()
            kind = limits.first_exceeded(spent + account.reserved, amount)
            if kind is not None:
                return Refused(kind, limits.get(kind) or 0, spent, account.reserved, amount)
            hold = Hold(f"m{next(self._ids)}", budget, amount, now + ttl)
            account.holds[hold.id] = hold
            account.reserved = account.reserved + amount
            return hold

    def _drop(self, account: _Account, hold: Hold) -> bool:
        if account.holds.pop(hold.id, None) is None:
            return False  # expired or already settled: never subtract twice
        account.reserved = account.reserved - hold.amount
        return True

    def settle(self, hold: Hold, actual: Amount, record: SpendRecord | None = None) -> None:
        with self._lock:
            account = self._account(hold.budget)
            self._drop(account, hold)
            account.total = account.total + actual
            if hold.budget in self._windowed:
                account.entries.append((self.clock(), actual))
            if record is not None and self._keep_records:
                self._records.append(record)

    def release(self, hold: Hold) -> None:
        with self._lock:
            self._drop(self._account(hold.budget), hold)

    def snapshot(self, budget: str, window: Window | None) -> Snapshot:
        with self._lock:
            now = self.clock()
            account = self._account(budget)
            if account.holds:
                self._expire(account, now)
            return Snapshot(self._spent(account, window, now), account.reserved)

    def records(
        self, *, budget: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[SpendRecord]:
        with self._lock:
            return [
                r for r in self._records
                if (budget is None or r.budget == budget)
                and (since is None or r.time >= since)
                and (until is None or r.time < until)
            ]
