"""What happened to calls, for whoever listens: the ``budgetguard`` logger and subscribers.

The call path publishes one :class:`CallSettled` per settled call and one :class:`CallRefused`
per refusal. Nothing is built when nobody listens (no subscriber, logger not enabled for the
level), so the hot path pays one check. Events carry numbers and names only: never a prompt,
a completion, a header or a key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from budgetguard._usage import Usage

__all__ = [
    "CallRefused",
    "CallSettled",
    "Event",
    "logger",
    "origin_capture",
    "publish",
    "set_origin_capture",
    "subscribe",
    "unsubscribe",
    "wanted",
]

logger = logging.getLogger("budgetguard")
logger.addHandler(logging.NullHandler())  # a library logs only where the application says so


@dataclass(frozen=True, slots=True)
class CallSettled:
    """A call was paid for: what it cost and where it was charged."""

    provider: str
    endpoint: str
    #: The model the request asked for, and the one the response named (None if it named none).
    request_model: str
    response_model: str | None
    usage: Usage
    #: True when the usage was estimated (the server reported none), False when billed.
    estimated: bool
    #: The names of the budgets charged, innermost first; every scope's name, outermost first.
    budgets: tuple[str, ...]
    scope_path: str
    reserved_usd: Decimal
    reserved_tokens: int
    #: The API billed more than was reserved.
    under_reserved: bool
    #: Seconds from the start of the call to its settlement.
    duration: float
    #: What the origin capture (see ``set_origin_capture``) returned when the call started.
    origin: object = None


@dataclass(frozen=True, slots=True)
class CallRefused:
    """A budget refused a request before it was sent."""

    provider: str
    endpoint: str
    request_model: str
    budget: str
    key: str | None
    limit_kind: str
    limit: Decimal | int
    spent: Decimal | int
    reserved: Decimal | int
    requested: Decimal | int
    detail: str
    origin: object = None


Event = CallSettled | CallRefused
_subscribers: tuple[Callable[[Event], None], ...] = ()
_lock = threading.Lock()
#: Called when a call starts (in the caller's context) if set; its result rides on the call's
#: events. Telemetry sets it to capture the span active at the start: a stream settles later,
#: when that span is no longer the current one.
origin_capture: Callable[[], object] | None = None


def set_origin_capture(capture: Callable[[], object] | None) -> None:
    global origin_capture
    origin_capture = capture


def subscribe(listener: Callable[[Event], None]) -> None:
    """Call ``listener`` with every event from now on (in the thread that settles the call)."""
    global _subscribers
    with _lock:
        if listener not in _subscribers:
            _subscribers = (*_subscribers, listener)


def unsubscribe(listener: Callable[[Event], None]) -> None:
    global _subscribers
    with _lock:
        _subscribers = tuple(s for s in _subscribers if s is not listener)


def wanted(level: int = logging.DEBUG) -> bool:
    """Whether an event at ``level`` would reach anyone: build it only then."""
    return bool(_subscribers) or logger.isEnabledFor(level)


def publish(event: Event) -> None:
    """Log ``event`` and hand it to every subscriber; a failing subscriber is logged, never
    raised into the caller's API call."""
    if isinstance(event, CallSettled):
        level = logging.WARNING if event.under_reserved else logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "%s %s call to %s: %d prompt + %d completion tokens, $%s (%s), budgets %s%s",
                event.provider,
                event.endpoint,
                event.response_model or event.request_model,
                event.usage.prompt_tokens,
                event.usage.completion_tokens,
                event.usage.cost_usd,
                "estimated" if event.estimated else "billed",
                ", ".join(event.budgets) or "none",
                f"; reserved ${event.reserved_usd}, billed more" if event.under_reserved else "",
                extra={"budgetguard": _fields(event)},
            )
    elif logger.isEnabledFor(logging.WARNING):
        logger.warning(
            "budget %r refused a %s %s request to %s before sending: %s %s + %s reserved + %s "
            "requested > limit %s",
            event.budget,
            event.provider,
            event.endpoint,
            event.request_model,
            event.limit_kind,
            event.spent,
            event.reserved,
            event.requested,
            event.limit,
            extra={"budgetguard": _fields(event)},
        )
    for listener in _subscribers:
        try:
            listener(event)
        except Exception:
            logger.exception("a budgetguard event subscriber failed")


def _fields(event: Event) -> dict[str, object]:
    """The event's numbers as plain fields for structured log handlers."""
    out: dict[str, object] = {"event": type(event).__name__}
    for name in event.__slots__:
        value = getattr(event, name)
        if isinstance(value, Usage):
            out.update(
                prompt_tokens=value.prompt_tokens,
                completion_tokens=value.completion_tokens,
                cached_tokens=value.cached_tokens,
                reasoning_tokens=value.reasoning_tokens,
                cost_usd=str(value.cost_usd),
                unpriced=bool(value.unpriced_requests),
            )
        elif isinstance(value, Decimal):
            out[name] = str(value)
        else:
            out[name] = value
    return out
