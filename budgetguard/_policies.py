"""What a budget does when a request would not fit: the ``on_exceed`` strategies.

Each policy is a small value object; the call path asks it what to do with a refusal. They are
strategies, not code paths, so a user can pass ``Wait(max_wait=30)`` as easily as ``"wait"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from budgetguard._errors import ConfigError

__all__ = ["Clamp", "Policy", "Raise", "Wait", "Warn", "parse_policy"]


@dataclass(frozen=True, slots=True)
class Policy:
    """Base class. ``name`` is what appears in config files and error messages."""

    @property
    def name(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True, slots=True)
class Raise(Policy):
    """Refuse the request with ``BudgetExceeded`` before it is sent (the default)."""


@dataclass(frozen=True, slots=True)
class Warn(Policy):
    """Soft cap: send anyway, emit ``SoftCapWarning`` and call ``on_alert`` once per crossing."""


@dataclass(frozen=True, slots=True)
class Clamp(Policy):
    """Lower the request's output cap so its worst case fits; refuse if fewer than
    ``min_output_tokens`` would remain (then even the prompt barely fits)."""

    min_output_tokens: int = 1

    def __post_init__(self) -> None:
        value = self.min_output_tokens
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"Clamp(min_output_tokens=...) must be a whole number >= 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class Wait(Policy):
    """Wait (bounded by ``max_wait`` seconds) until the budget can hold the request, then
    send it; raise ``BudgetExceeded`` if it still does not fit. Useful with windows, and with
    concurrent callers whose reservations will be released."""

    max_wait: float = 60.0

    def __post_init__(self) -> None:
        value = self.max_wait
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (value >= 0 and math.isfinite(value))
        ):
            raise ConfigError(f"Wait(max_wait=...) must be a finite number of seconds >= 0, got {value!r}")


_BY_NAME: dict[str, type[Policy]] = {"raise": Raise, "warn": Warn, "clamp": Clamp, "wait": Wait}


def parse_policy(value: str | Policy, *, max_wait: float | None = None) -> Policy:
    """A policy from its config name (``raise``, ``warn``, ``clamp``, ``wait``) or itself."""
    if isinstance(value, Policy):
        return value
    if not isinstance(value, str) or value.lower() not in _BY_NAME:
        raise ConfigError(f"on_exceed must be one of {', '.join(_BY_NAME)} or a Policy, got {value!r}")
    cls = _BY_NAME[value.lower()]
    if cls is Wait and max_wait is not None:
        return Wait(max_wait=max_wait)
    return cls()
