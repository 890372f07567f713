"""How long the ``wait`` policy sleeps before trying a reservation again.

Built on tenacity's wait strategies (exponential backoff with jitter, capped) and bounded by
the time left until the budget's window rolls over, so a caller waiting for a daily window
wakes up at its boundary instead of polling all night.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenacity import RetryCallState, wait_exponential, wait_random

if TYPE_CHECKING:
    from budgetguard._scopes import Budget

__all__ = ["next_wait"]

_backoff = wait_exponential(multiplier=0.01, max=1.0) + wait_random(0, 0.01)


def next_wait(budget: Budget, waited: float, max_wait: float, attempt: int | None = None) -> float:
    """Seconds to sleep before the next attempt: backoff, never past the window's end or the deadline."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt if attempt is not None else max(1, int(waited / 0.05) + 1)
    delay = _backoff(state)
    if budget.window is not None:
        _, end = budget.window.span(budget.ledger.clock())
        delay = min(delay, max(0.0, end - budget.ledger.clock()) + 0.001)
    return max(0.0, min(delay, max_wait - waited))
