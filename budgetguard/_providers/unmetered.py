"""SDKs budgetguard does not meter: say so when they are called inside a capped budget.

A call through such an SDK inside ``Budget(max_usd=...)`` is sent and billed, and the budget
does not see it. These SDKs are built on the same generated client as openai, so a warn-only
wrapper on ``SyncAPIClient.request`` / ``AsyncAPIClient.request`` catches every call. The
wrapper is put in place when the SDK's client module is imported (or at the first scope, if it
already was), so budgetguard never imports an SDK the program does not use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from budgetguard import _context
from budgetguard._errors import BudgetGuardWarning
from budgetguard._providers._imports import when_imported
from budgetguard._scopes import Budget
from budgetguard._warnings import warn

__all__ = ["UNMETERED_SDKS", "watch"]

#: SDK name -> the module holding its generated base client.
UNMETERED_SDKS = {"groq": "groq._base_client"}
_warned: set[str] = set()
_patched: set[str] = set()


def _warn_if_capped(sdk: str) -> None:
    if sdk in _warned:
        return
    budgets = [e.scope for e in _context.active_entries() if isinstance(e.scope, Budget)]
    capped = [b.name for b in budgets if not b.limits.unlimited]
    if capped:
        _warned.add(sdk)
        warn(
            f"budgetguard does not meter the {sdk} SDK: this call is sent, billed and not counted "
            f"against budget {capped[-1]!r} (the openai and anthropic SDKs and libraries on them are)",
            BudgetGuardWarning,
        )


def _patch(sdk: str, module: ModuleType) -> None:
    if sdk in _patched:
        return
    _patched.add(sdk)
    for class_name, is_async in (("SyncAPIClient", False), ("AsyncAPIClient", True)):
        owner = getattr(module, class_name, None)
        original = getattr(owner, "request", None)
        if owner is None or not callable(original):
            continue
        owner.request = _warning_wrapper(sdk, original, is_async)


def _warning_wrapper(sdk: str, original: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    if is_async:

        @functools.wraps(original)
        async def arequest(*args: Any, **kwargs: Any) -> Any:
            if _context.active_entries():
                _warn_if_capped(sdk)
            return await original(*args, **kwargs)

        return arequest

    @functools.wraps(original)
    def request(*args: Any, **kwargs: Any) -> Any:
        if _context.active_entries():
            _warn_if_capped(sdk)
        return original(*args, **kwargs)

    return request


def watch() -> None:
    """Patch the watched SDKs now if imported, else when they are (idempotent)."""
    for sdk, module_name in UNMETERED_SDKS.items():
        when_imported(module_name, functools.partial(_patch, sdk))


_context.on_first_scope(watch)
