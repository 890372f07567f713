"""Where a call is made: the chain of active scope entries, the "unmetered" flag, and hooks.

A *scope* is a ``track_usage()`` tracker or a ``Budget`` object; one object may be active in
many places at once (a named budget shared by every request of a web server). An *entry* is
one activation of a scope: one ``with`` block or one invocation of a decorated function, in
one thread or task. Calls are charged to the scopes of the entries active where they are made,
and a call that outlives its request (a stream) is owned by the innermost entry: only that
entry's end may end it, never another thread or task leaving the same scope object.

This module knows neither scopes nor calls: it keeps the chain in a contextvar (asyncio tasks
inherit it; threads get it through ``budgetguard.propagate``) and runs the hooks registered by
the layers above it.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "Entry",
    "active_entries",
    "ensure_installed",
    "entries_open_elsewhere",
    "entry_ended",
    "entry_ended_async",
    "is_unmetered",
    "on_entry_end",
    "on_first_scope",
    "pop",
    "pop_process",
    "push",
    "push_process",
    "uninstalled",
    "unmetered",
]


class Entry:
    """One activation of a scope, and the calls it owns that are still being read."""

    __slots__ = ("_owned", "derived", "scope", "tally")

    def __init__(self, scope: Any, tally: Any = None) -> None:
        self.scope = scope
        #: A decorated function's tally: credited with every call made in this entry.
        self.tally = tally
        # Created on first use: most entries never own a stream.
        self._owned: dict[object, None] | None = None
        #: Scratch space of the call path: what it derived from the chain of entries ending in
        #: this one (computed once per chain rather than once per call).
        self.derived: Any = None

    # Invariant: ``_owned`` is only read or changed under ``_owned_lock``, and ``close`` takes
    # it away whole. Threads that share this entry (propagate, ScopedThreadPoolExecutor, child
    # tasks) may adopt and drop calls while it ends; nobody ever iterates a dict another thread
    # can change, so "changed size during iteration" cannot happen, and a call adopted after
    # the entry closed is refused (it then ends by its own close, end or finalizer).
    def adopt(self, call: object) -> bool:
        """Own ``call`` until it ends; False if this entry has already ended."""
        with _owned_lock:
            owned = self._owned
            if owned is _CLOSED:
                return False
            if owned is None:
                owned = self._owned = {}
            owned[call] = None
            return True

    def drop(self, call: object) -> None:
        """``call`` ended on its own: forget it."""
        with _owned_lock:
            owned = self._owned
            if owned is not None and owned is not _CLOSED:
                owned.pop(call, None)

    def close(self) -> list[object]:
        """End this entry: the calls it still owns, taken away in one step."""
        with _owned_lock:
            owned, self._owned = self._owned, _CLOSED
        return [] if owned is None or owned is _CLOSED else list(owned)

    def __repr__(self) -> str:
        return f"<Entry of {self.scope!r}>"


_CLOSED: dict[object, None] = {}
# One lock for every entry: it is held only to add, drop or take a dict entry.
_owned_lock = threading.Lock()


_entries: contextvars.ContextVar[tuple[Entry, ...]] = contextvars.ContextVar(
    "budgetguard_entries", default=()
)
# Set while budgetguard itself talks to the API (exact mode's token counting).
_unmetered: contextvars.ContextVar[bool] = contextvars.ContextVar("budgetguard_unmetered", default=False)


# Entries of process-wide scopes: every call in the process is charged to them, whatever
# thread or task makes it. Replaced whole (never changed in place) under _process_lock.
_process: tuple[Entry, ...] = ()
_process_lock = threading.Lock()
# How many entries are active in some thread or task right now: a call made with none of its
# own while this is above zero escaped a scope (a thread that did not inherit the context).
_open_entries = 0
_count_lock = threading.Lock()


def active_entries() -> tuple[Entry, ...]:
    """The entries a call made here is charged to, outermost first (process-wide ones first)."""
    local = _entries.get()
    process = _process
    return process + local if process else local


def entries_open_elsewhere() -> bool:
    """Whether some thread or task has a scope entered (checked when a call has none)."""
    return _open_entries > 0


def push(entry: Entry) -> None:
    global _open_entries
    if not _installed:
        ensure_installed()
    _entries.set((*_entries.get(), entry))
    with _count_lock:
        _open_entries += 1


def pop(entry: Entry) -> None:
    global _open_entries
    stack = _entries.get()
    if stack and stack[-1] is entry:  # the usual case
        _entries.set(stack[:-1])
    else:
        # User code left an inner entry open (a generator paused mid-block): unwind this one.
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is entry:
                _entries.set(stack[:i] + stack[i + 1 :])
                break
        else:
            return
    with _count_lock:
        _open_entries -= 1


def push_process(entry: Entry) -> None:
    """Make ``entry`` active in every thread and task of the process."""
    global _process
    if not _installed:
        ensure_installed()
    with _process_lock:
        _process = (*_process, entry)


def pop_process(scope: object) -> Entry | None:
    """End the innermost process-wide entry of ``scope``; None if it has none."""
    global _process
    with _process_lock:
        for i in range(len(_process) - 1, -1, -1):
            entry = _process[i]
            if entry.scope is scope:
                _process = _process[:i] + _process[i + 1 :]
                return entry
    return None


def is_unmetered() -> bool:
    return _unmetered.get()


class unmetered:
    """Calls made inside are neither counted nor reserved (budgetguard's own API calls)."""

    def __enter__(self) -> None:
        self._token = _unmetered.set(True)

    def __exit__(self, *exc: object) -> None:
        _unmetered.reset(self._token)


# -- hooks registered by the layers above ------------------------------------------------------

_installers: list[Callable[[], None]] = []
_installed = False
_end_hooks: list[tuple[Callable[[Entry], None], Callable[[Entry], Awaitable[None]]]] = []


def on_first_scope(install: Callable[[], None]) -> None:
    """Run ``install`` (an SDK hook's installer) before the first scope is entered."""
    global _installed
    _installers.append(install)
    _installed = False


def uninstalled() -> None:
    """The hooks were removed: the next scope entered installs them again."""
    global _installed
    _installed = False


def ensure_installed() -> None:
    global _installed
    for install in _installers:
        install()  # idempotent
    _installed = True


def on_entry_end(sync: Callable[[Entry], None], asynchronous: Callable[[Entry], Awaitable[None]]) -> None:
    """Call ``sync`` (or, from ``async with``, await ``asynchronous``) when an entry ends."""
    _end_hooks.append((sync, asynchronous))


# The layers above register after the ones below them (they import them first), and run first:
# the call path ends a scope's calls before the scope itself lets go of its store.
def entry_ended(entry: Entry) -> None:
    for sync, _ in reversed(_end_hooks):
        sync(entry)


async def entry_ended_async(entry: Entry) -> None:
    for _, asynchronous in reversed(_end_hooks):
        await asynchronous(entry)
