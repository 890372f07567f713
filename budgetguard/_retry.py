"""Retries for agent steps that respect the budget, built on tenacity.

``@budgetguard.retry()`` retries transient API errors (429 honouring ``Retry-After``, 5xx,
timeouts, dropped connections). Every attempt the API billed is charged through the normal
path; ``BudgetExceeded`` is never retried; and it stops early when the next attempt could not
fit in an enclosing budget, instead of sleeping only to be refused.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from budgetguard._calls import ReservationWatch, watching
from budgetguard._errors import BudgetGuardError, ConfigError
from budgetguard._scopes import Budget, active_scopes

__all__ = ["is_transient", "retry", "stop_when_over_budget", "wait_retry_after"]

P = ParamSpec("P")
R = TypeVar("R")

_TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """Whether an exception is an API error worth retrying. Refusals never are."""
    if isinstance(exc, BudgetGuardError):
        return False
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a dependency
        return False
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _TRANSIENT_STATUS or exc.status_code >= 500
    return False


class wait_retry_after(wait_base):
    """Wait what the server's ``Retry-After`` (or ``retry-after-ms``) asks, else ``fallback``."""

    def __init__(self, fallback: wait_base, max_wait: float = 60.0) -> None:
        self.fallback = fallback
        self.max_wait = max_wait

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if headers is not None:
            for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
                value = headers.get(name)
                try:
                    seconds = float(value) * scale if value is not None else None
                except ValueError:
                    seconds = None  # an HTTP date: fall back to backoff
                if seconds is not None and seconds >= 0:
                    return min(seconds, self.max_wait)
        return float(self.fallback(retry_state))


class stop_when_over_budget(stop_base):
    """Stop when an enclosing budget could not hold the largest request of the last attempt."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        watch = watching().get()
        needed = watch.peak if watch is not None else None
        if needed is None:
            return False
        for scope in active_scopes():
            if not isinstance(scope, Budget) or scope.limits.unlimited:
                continue
            snap = scope.snapshot()
            if scope.limits.first_exceeded(snap.spent + snap.reserved, needed) is not None:
                return True
        return False


def retry(
    *,
    attempts: int = 5,
    max_delay: float = 120.0,
    retry_on: Callable[[BaseException], bool] = is_transient,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async agent step to retry transient API errors within the budget.

    Stops after ``attempts`` tries, after ``max_delay`` seconds, or when the next attempt could
    not fit in an enclosing budget; then the last error is raised as it was.
    """
    if attempts < 1:
        raise ConfigError(f"retry(attempts=...) must be at least 1, got {attempts}")

    def should_retry(exc: BaseException) -> bool:
        return not isinstance(exc, BudgetGuardError) and retry_on(exc)

    options: dict[str, Any] = {
        "retry": retry_if_exception(should_retry),
        "stop": stop_after_attempt(attempts) | stop_after_delay(max_delay) | stop_when_over_budget(),
        "wait": wait_retry_after(wait_exponential(multiplier=0.5, max=20.0) + wait_random(0, 0.5)),
        "reraise": True,
    }

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def arun(*args: P.args, **kwargs: P.kwargs) -> Any:
                token = watching().set(watch := ReservationWatch())
                try:
                    async for attempt in AsyncRetrying(**options):
                        watch.peak = None
                        with attempt:
                            return await fn(*args, **kwargs)
                finally:
                    watching().reset(token)
                raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

            return arun  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            token = watching().set(watch := ReservationWatch())
            try:
                for attempt in Retrying(**options):
                    watch.peak = None  # what this attempt reserves decides whether another fits
                    with attempt:
                        return fn(*args, **kwargs)
            finally:
                watching().reset(token)
            raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

        return run

    return decorate
