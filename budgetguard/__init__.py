"""budgetguard: know what every LLM call costs, and stop a run before it overspends.

    import budgetguard as bg

    with bg.Budget(max_usd=0.50, name="run") as run:
        agent(client, task)          # any code on the openai SDK
    print(run.usage)

Importing budgetguard is cheap: it imports neither openai, tiktoken nor genai-prices; they
load on first use. Nothing here touches the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from budgetguard._errors import (
    BudgetExceeded,
    BudgetGuardError,
    BudgetGuardWarning,
    ConfigError,
    EstimatedUsageWarning,
    EstimateError,
    OutputCapWarning,
    SoftCapWarning,
    StoreError,
    UnderReservedWarning,
    UnknownModelError,
    UnknownModelWarning,
    find_budget_exceeded,
)
from budgetguard._ledger import (
    Amount,
    Hold,
    Ledger,
    LimitKind,
    Limits,
    Refused,
    Snapshot,
    SpendRecord,
    Window,
    close_ledgers,
    open_ledger,
)
from budgetguard._policies import (
    Clamp,
    Decision,
    FirstOf,
    LowerOutputCap,
    Policy,
    Raise,
    Refusal,
    Refuse,
    SendAnyway,
    Wait,
    WaitThen,
    Warn,
)
from budgetguard._providers import instrument, uninstrument
from budgetguard._scopes import (
    Budget,
    ScopedThreadPoolExecutor,
    Tally,
    UsageTracker,
    active_scopes,
    propagate,
    track_usage,
    usage_of,
)
from budgetguard._settings import configure, reset_settings
from budgetguard._usage import Usage
from budgetguard._windows import Calendar, Rolling, parse_window

if TYPE_CHECKING:
    from budgetguard._preflight import Estimate, estimate_request
    from budgetguard._pricing import ModelRates, PriceBook
    from budgetguard._retry import retry
    from budgetguard._telemetry import disable_telemetry, enable_telemetry

__version__ = "0.1.0"

__all__ = [
    "Amount",
    "Budget",
    "BudgetExceeded",
    "BudgetGuardError",
    "BudgetGuardWarning",
    "Calendar",
    "Clamp",
    "ConfigError",
    "Decision",
    "Estimate",
    "EstimateError",
    "EstimatedUsageWarning",
    "FirstOf",
    "Hold",
    "Ledger",
    "LimitKind",
    "Limits",
    "LowerOutputCap",
    "ModelRates",
    "OutputCapWarning",
    "Policy",
    "PriceBook",
    "Raise",
    "Refusal",
    "Refuse",
    "Refused",
    "Rolling",
    "ScopedThreadPoolExecutor",
    "SendAnyway",
    "Snapshot",
    "SoftCapWarning",
    "SpendRecord",
    "StoreError",
    "Tally",
    "UnderReservedWarning",
    "UnknownModelError",
    "UnknownModelWarning",
    "Usage",
    "UsageTracker",
    "Wait",
    "WaitThen",
    "Warn",
    "Window",
    "__version__",
    "active_scopes",
    "close_ledgers",
    "configure",
    "disable_telemetry",
    "enable_telemetry",
    "estimate_request",
    "find_budget_exceeded",
    "instrument",
    "open_ledger",
    "parse_window",
    "propagate",
    "reset_settings",
    "retry",
    "track_usage",
    "uninstrument",
    "usage_of",
]

# Loaded on first attribute access: these pull in openai, tiktoken or genai-prices.
_LAZY = {
    "Estimate": "budgetguard._preflight",
    "estimate_request": "budgetguard._preflight",
    "ModelRates": "budgetguard._pricing",
    "PriceBook": "budgetguard._pricing",
    "retry": "budgetguard._retry",
    # Imports opentelemetry only when called.
    "enable_telemetry": "budgetguard._telemetry",
    "disable_telemetry": "budgetguard._telemetry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'budgetguard' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
