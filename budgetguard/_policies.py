"""What a budget does when a request would not fit: the ``on_exceed`` strategies.

The call path asks the refusing budget's policy what to do with a :class:`Refusal` and gets a
decision back: :class:`Refuse` (raise ``BudgetExceeded``, nothing is sent), :class:`SendAnyway`
(a soft cap), :class:`WaitThen` (sleep, then try again) or :class:`LowerOutputCap` (try again
with a smaller output cap). The arithmetic of each decision (how many output tokens fit, how
long to sleep) lives here, with the policy that makes it.

Policies are small immutable values, composable like tenacity's strategies:
``Clamp(min_output_tokens=64) | Wait(max_wait=30)`` lowers the output cap when that is enough
and otherwise waits for room.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from budgetguard._errors import ConfigError

__all__ = [
    "Clamp",
    "Decision",
    "FirstOf",
    "LowerOutputCap",
    "Policy",
    "Raise",
    "Refusal",
    "Refuse",
    "SendAnyway",
    "Wait",
    "WaitThen",
    "Warn",
    "output_tokens_that_fit",
    "parse_policy",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A budget could not hold a request: the numbers, in the unit of the cap that refused.

    ``kind`` is ``"usd"`` (amounts in picodollars), ``"tokens"`` or ``"requests"``.
    """

    kind: Literal["usd", "tokens", "requests"]
    limit: int
    spent: int
    reserved: int
    requested: int
    #: Seconds this request has waited for room so far, and how many times it was refused.
    waited: float
    attempt: int
    #: Seconds until room can appear without anyone acting: 0.0 when holds in flight may be
    #: released or a rolling window sheds spend, the time to a calendar window's end, None never.
    room_appears_in: float | None
    #: How many completions one output token is billed for (``n``, prompts x ``best_of``).
    choices: int
    #: The output tokens (all choices) the refused request reserved.
    output_tokens: int
    #: What the request would cost in this unit with ``n`` output tokens in all; None when its
    #: output cannot be lowered (embeddings, a request-count cap).
    cost_with_output: Callable[[int], int] | None

    @property
    def room(self) -> int:
        return self.limit - self.spent - self.reserved


@dataclass(frozen=True, slots=True)
class Refuse:
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SendAnyway:
    pass


@dataclass(frozen=True, slots=True)
class WaitThen:
    seconds: float


@dataclass(frozen=True, slots=True)
class LowerOutputCap:
    #: The new output cap of each completion.
    tokens_per_choice: int


Decision = Refuse | SendAnyway | WaitThen | LowerOutputCap


@dataclass(frozen=True, slots=True)
class Policy:
    """Base class. ``name`` is what appears in config files and error messages."""

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    def decide(self, refusal: Refusal) -> Decision:
        """What to do with a request this budget cannot hold."""
        raise NotImplementedError

    def __or__(self, other: Policy) -> Policy:
        if not isinstance(other, Policy):
            return NotImplemented
        return FirstOf((self, other))


@dataclass(frozen=True, slots=True)
class Raise(Policy):
    """Refuse the request with ``BudgetExceeded`` before it is sent (the default)."""

    def decide(self, refusal: Refusal) -> Decision:
        return Refuse()


@dataclass(frozen=True, slots=True)
class Warn(Policy):
    """Soft cap: send anyway, emit ``SoftCapWarning`` and call ``on_alert`` once per crossing."""

    def decide(self, refusal: Refusal) -> Decision:
        return SendAnyway()


@dataclass(frozen=True, slots=True)
class Clamp(Policy):
    """Lower the request's output cap so its worst case fits; refuse if fewer than
    ``min_output_tokens`` would remain (then even the prompt barely fits)."""

    min_output_tokens: int = 1

    def __post_init__(self) -> None:
        value = self.min_output_tokens
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"Clamp(min_output_tokens=...) must be a whole number >= 1, got {value!r}")

    def decide(self, refusal: Refusal) -> Decision:
        per_choice = output_tokens_that_fit(refusal, refusal.room)
        if per_choice is None:
            return Refuse("clamp cannot lower a request count or an embedding")
        if per_choice < self.min_output_tokens or per_choice * refusal.choices >= refusal.output_tokens:
            return Refuse(
                f"clamp: only {per_choice} output tokens would fit, the minimum is {self.min_output_tokens}"
            )
        return LowerOutputCap(per_choice)


def output_tokens_that_fit(refusal: Refusal, room: int) -> int | None:
    """The most output tokens per completion with which the refused request costs at most
    ``room`` (in the refusing cap's unit); None when its output cannot be lowered."""
    cost = refusal.cost_with_output
    if cost is None:
        return None
    without_output = cost(0)
    per_token = cost(1) - without_output
    # Pricing is linear in output tokens within a request's tier, so one division finds the
    # most that fit; the call path re-reserves the result, which verifies it.
    fits = (room - without_output) // per_token if per_token > 0 else 0
    return max(fits, 0) // refusal.choices


@dataclass(frozen=True, slots=True)
class Wait(Policy):
    """Wait (bounded by ``max_wait`` seconds) until the budget can hold the request, then
    send it; raise ``BudgetExceeded`` if it still does not fit. Useful with windows, and with
    concurrent callers whose reservations will be released.

    It refuses at once when nothing can free up in time (no holds in flight, no window that
    sheds spend before ``max_wait`` runs out, or a request larger than the whole cap). Between
    attempts it backs off exponentially (10 ms doubling to 1 s, plus up to 10 ms of jitter),
    waking at a calendar window's boundary rather than after it.
    """

    max_wait: float = 60.0

    def __post_init__(self) -> None:
        value = self.max_wait
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (value >= 0 and math.isfinite(value))
        ):
            raise ConfigError(f"Wait(max_wait=...) must be a finite number of seconds >= 0, got {value!r}")

    def decide(self, refusal: Refusal) -> Decision:
        left = self.max_wait - refusal.waited
        appears = refusal.room_appears_in
        if refusal.requested > refusal.limit or appears is None or left <= 0 or appears > left:
            return Refuse(f"waited {refusal.waited:.1f}s of max_wait {self.max_wait}s")
        delay = _backoff(refusal.attempt)
        if appears > 0:
            delay = min(delay, appears + 0.001)
        return WaitThen(max(0.0, min(delay, left)))


def _backoff(attempt: int) -> float:
    # tenacity's strategies, imported when a wait first happens: most programs never wait.
    from tenacity import RetryCallState, wait_exponential, wait_random

    strategy = wait_exponential(multiplier=0.01, max=1.0) + wait_random(0, 0.01)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempt)
    return float(strategy(state))


@dataclass(frozen=True, slots=True)
class FirstOf(Policy):
    """Ask each policy in turn; the first that does not refuse decides (``a | b``)."""

    policies: tuple[Policy, ...]

    @property
    def name(self) -> str:
        return " | ".join(policy.name for policy in self.policies)

    def decide(self, refusal: Refusal) -> Decision:
        details: list[str] = []
        for policy in self.policies:
            decision = policy.decide(refusal)
            if not isinstance(decision, Refuse):
                return decision
            if decision.detail:
                details.append(decision.detail)
        return Refuse("; ".join(details))

    def __or__(self, other: Policy) -> Policy:
        if not isinstance(other, Policy):
            return NotImplemented
        return FirstOf((*self.policies, other))


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
