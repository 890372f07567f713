"""Ledger backends behind one interface, chosen by URI (``memory://``, ``sqlite:///path``, ``redis://``).

``open_ledger(uri)`` returns one shared ledger per URI (and clock and options) per process, so
every budget naming the same store shares its connection. Backends are imported on first use:
``import budgetguard`` loads neither sqlite3 connections nor redis.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from budgetguard._errors import ConfigError
from budgetguard._ledger._base import (
    DONE_GRACE,
    PICOS_PER_USD,
    Amount,
    Hold,
    Ledger,
    LimitKind,
    Limits,
    Refused,
    Snapshot,
    SpendRecord,
    Window,
    picos_to_usd,
    usd_to_picos,
)
from budgetguard._ledger._memory import MemoryLedger

__all__ = [
    "DONE_GRACE",
    "PICOS_PER_USD",
    "STORE_SCHEMES",
    "Amount",
    "Hold",
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
    "open_ledger",
    "picos_to_usd",
    "usd_to_picos",
]

STORE_SCHEMES = ("memory", "sqlite", "redis", "rediss")
_EXAMPLES = "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, redis://host:6379/0"

_lock = threading.Lock()
_open: dict[tuple[Any, ...], Ledger] = {}


def check_store_uri(uri: str) -> tuple[str, str]:
    """Validate a store URI; return ``(scheme, location)`` where location is the SQLite path or the URL.

    Raises ``ConfigError`` naming the known schemes or the expected shape.
    """
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(f"invalid store URI {uri!r}: expected one of {_EXAMPLES}")
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in STORE_SCHEMES:
        raise ConfigError(
            f"unknown store scheme {scheme!r} in {uri!r}: known schemes are "
            f"{', '.join(s + '://' for s in STORE_SCHEMES)}"
        )
    if scheme == "memory":
        return scheme, uri[len("memory://") :]
    if scheme == "sqlite":
        rest = uri[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(
                f"invalid SQLite store URI {uri!r}: use sqlite:///relative/path.db (three slashes), "
                "sqlite:////absolute/path.db (four) or sqlite:///:memory:"
            )
        path = rest[1:]
        if "?" in path or "#" in path:
            raise ConfigError(f"invalid SQLite store URI {uri!r}: query strings are not supported")
        return scheme, path
    try:
        parts = urlsplit(uri)
        port = parts.port
        db = parts.path.strip("/")
    except ValueError as exc:
        raise ConfigError(f"invalid Redis store URI {uri!r}: {exc}") from exc
    if not parts.hostname:
        raise ConfigError(f"invalid Redis store URI {uri!r}: expected redis://host:port/db")
    if db and not db.isdigit():
        raise ConfigError(
            f"invalid Redis store URI {uri!r}: the database must be a number (redis://host:{port or 6379}/0)"
        )
    return scheme, uri


def open_ledger(uri: str, *, clock: Callable[[], float] | None = None, **options: Any) -> Ledger:
    """The ledger for a store URI, shared by every caller in this process that names it.

    ``memory://`` (or ``memory://name`` for separate in-memory stores); ``sqlite:///path.db``
    (relative to the working directory; ``sqlite:////abs/path.db``, ``sqlite:///~/path.db`` and
    ``sqlite:///:memory:`` too); ``redis://[:password@]host:port/db`` or ``rediss://`` (TLS).
    ``options`` go to the backend (``keep_records`` for memory; ``busy_timeout`` for SQLite;
    ``prefix``, ``fail_open``, ``records_cap``, ``socket_timeout`` for Redis). One ledger is
    kept per URI, clock and options; ``close_ledgers()`` closes them all.
    """
    scheme, location = check_store_uri(uri)
    clock = clock or time.time
    if scheme == "sqlite" and location != ":memory:":
        location = os.path.abspath(os.path.expanduser(location))
    cache_key = (scheme, location, clock, tuple(sorted(options.items())))
    with _lock:
        ledger = _open.get(cache_key)
        if ledger is None:
            ledger = _open[cache_key] = _create(scheme, location, clock, options)
        return ledger


def _create(scheme: str, location: str, clock: Callable[[], float], options: dict[str, Any]) -> Ledger:
    try:
        if scheme == "memory":
            return MemoryLedger(clock=clock, **options)
        if scheme == "sqlite":
            from budgetguard._ledger._sqlite import SQLiteLedger

            return SQLiteLedger(location, clock=clock, **options)
        from budgetguard._ledger._redis import RedisLedger

        return RedisLedger(location, clock=clock, **options)
    except TypeError as exc:  # an option the backend does not take
        raise ConfigError(f"invalid option for a {scheme}:// ledger: {exc}") from exc


def close_ledgers() -> None:
    """Close every ledger ``open_ledger`` handed out (tests; the end of a program)."""
    with _lock:
        ledgers = list(_open.values())
        _open.clear()
    for ledger in ledgers:
        ledger.close()
