"""Ledger backends behind one interface, chosen by the scheme of a store URI.

``open_ledger(uri)`` returns one shared ledger per URI (and clock and options) per process, so
every budget naming the same store shares its connection.

Backends register by scheme, in the style of the ``limits`` library: a ``Ledger`` subclass that
declares ``schemes = ("mystore",)`` in its class body is registered for ``mystore://`` when the
class is created, and opens itself with its ``from_uri`` classmethod; ``check_uri`` validates a
URI without opening anything (the config loader calls it at load time) and ``uri_options`` names
the options ``open_ledger`` may pass it (``fail_open`` for Redis). No scheme is spelled outside the
backend that declares it: the built-in backends (``_memory``, ``_sqlite``, ``_redis``, ``_cluster``)
declare theirs like any other, and their modules are imported the first time a URI needs one (see
``_base._BUILTIN_MODULES``), so ``import budgetguard`` loads neither sqlite3 nor redis.

Leases: for a backend that ``supports_leases``, the options ``lease_usd``, ``lease_tokens``,
``lease_requests``, ``lease_fraction`` and ``lease_flush`` (``LEASE_OPTIONS``) make ``open_ledger``
return a ``LeasingLedger`` over the store's shared ledger (see ``_lease``), one per store and lease
options.
"""

from __future__ import annotations

import atexit
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from budgetguard._errors import BudgetGuardWarning
from budgetguard._ledger._base import (
    DONE_GRACE,
    LEASE_OPTIONS,
    Amount,
    Hold,
    Ledger,
    LimitKind,
    Limits,
    Refused,
    Snapshot,
    SpendRecord,
    Window,
    backend_for,
    ledger_schemes,
    picos_to_usd,
    usd_to_picos,
)
from budgetguard._ledger._lease import LeasingLedger
from budgetguard._ledger._memory import MemoryLedger

__all__ = [
    "DEFAULT_STORE",
    "DONE_GRACE",
    "LEASE_OPTIONS",
    "Amount",
    "Hold",
    "LeasingLedger",
    "Ledger",
    "LimitKind",
    "Limits",
    "MemoryLedger",
    "Refused",
    "Snapshot",
    "SpendRecord",
    "Window",
    "check_store_uri",
    "close_ledgers",
    "ledger_schemes",
    "open_ledger",
    "picos_to_usd",
    "usd_to_picos",
]

#: The store of a budget that names none: in this process's memory.
DEFAULT_STORE = f"{MemoryLedger.schemes[0]}://"

_lock = threading.Lock()
_open: dict[tuple[Any, ...], Ledger] = {}


def check_store_uri(uri: str, **options: Any) -> type[Ledger]:
    """Validate a store URI, and options for ``open_ledger``, without opening anything.

    Returns the backend class. Raises ``ConfigError`` for a string that is not a URI (listing
    the shapes expected), an unknown scheme (listing the registered ones), a URI its backend
    refuses, or an option the backend does not take (``fail_open`` on anything but Redis).
    """
    backend = backend_for(uri)
    backend.check_uri(uri)
    backend.check_options(uri, options)
    LeasingLedger.check_lease_options(_lease_options(options))
    return backend


def _lease_options(options: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in options.items() if name in LEASE_OPTIONS}


def open_ledger(uri: str, *, clock: Callable[[], float] | None = None, **options: Any) -> Ledger:
    """The ledger for a store URI, shared by every caller in this process that names it.

    The URI's scheme chooses the backend (``ledger_schemes()`` lists the registered ones); each
    backend's class documents its URIs, and lists in ``uri_options`` the ``options`` it takes
    (``MemoryLedger``, ``SQLiteLedger``, ``RedisLedger``, ``RedisClusterLedger``, or any
    ``Ledger`` subclass that declares ``schemes``). The backend validates the URI and the options.
    Lease options (``LEASE_OPTIONS``) wrap the store's ledger, opened with the other options, in
    a ``LeasingLedger``. One ledger is kept per store, clock and options; ``close_ledgers()``
    closes them all.
    """
    backend = backend_for(uri)
    location = backend.check_uri(uri)
    backend.check_options(uri, options)
    lease = _lease_options(options)
    if lease:
        LeasingLedger.check_lease_options(lease)
        inner = open_ledger(uri, clock=clock, **{k: v for k, v in options.items() if k not in lease})
    clock = clock or time.time
    cache_key = (backend, location, clock, tuple(sorted(options.items())))
    with _lock:
        ledger = _open.get(cache_key)
        if ledger is None:
            if lease:
                ledger = LeasingLedger.from_options(inner, lease)
            else:
                ledger = backend.from_uri(uri, clock=clock, **options)
            _open[cache_key] = ledger
        return ledger


def close_ledgers() -> None:
    """Close every ledger ``open_ledger`` handed out (tests; done for you at interpreter exit).

    A ledger used after this opens its store again.
    """
    with _lock:
        ledgers = list(_open.values())
        _open.clear()
    # Leasing ledgers first: they write to the stores they wrap.
    ledgers.sort(key=lambda ledger: not isinstance(ledger, LeasingLedger))
    for ledger in ledgers:
        ledger.close()


@atexit.register
def _close_at_exit() -> None:
    # A SQLite ledger left open keeps its last writes in the -wal file beside the database; closed,
    # they are folded into the database file, so a copy of that file alone holds every spend.
    # Registered at import, before the call path's own exit hook, so that one (settling calls
    # still being read) runs first: atexit runs the last registered first.
    try:
        close_ledgers()
    except Exception as exc:  # at exit, a store that cannot close is reported, not raised
        warnings.warn(
            f"budgetguard could not close a ledger at exit: {exc!r}", BudgetGuardWarning, stacklevel=1
        )
