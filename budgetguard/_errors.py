"""Every exception and warning budgetguard raises, in one hierarchy.

Catch ``BudgetGuardError`` to handle anything budgetguard refuses; catch ``BudgetExceeded`` to
handle a cap. None of these derive from ``openai.OpenAIError`` on purpose: SDKs and retry
libraries that retry API errors must never retry a refusal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from decimal import Decimal


class BudgetGuardError(Exception):
    """Base class of every error budgetguard raises."""


class BudgetExceeded(BudgetGuardError):
    """A request was refused *before it was sent* because a budget could not hold it.

    ``limit_kind`` is ``"usd"``, ``"tokens"`` or ``"requests"``. ``limit``, ``spent``,
    ``reserved`` and ``requested`` are in the unit of that kind (Decimal dollars for
    ``"usd"``, integers otherwise); the ``*_usd`` attributes always carry dollars.
    """

    def __init__(
        self,
        *,
        budget: str,
        limit_kind: str,
        limit: Decimal | int,
        spent: Decimal | int,
        reserved: Decimal | int,
        requested: Decimal | int,
        spent_usd: Decimal,
        reserved_usd: Decimal,
        requested_usd: Decimal,
        limit_usd: Decimal | None,
        key: str | None = None,
        detail: str = "",
    ) -> None:
        self.budget = budget
        self.key = key
        self.limit_kind = limit_kind
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.requested = requested
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.requested_usd = requested_usd
        self.limit_usd = limit_usd
        self.detail = detail
        unit = "$" if limit_kind == "usd" else ""
        suffix = "" if limit_kind == "usd" else f" {limit_kind}"
        who = f"{budget!r}" + (f" (key {key!r})" if key is not None else "")
        message = (
            f"budget {who} would exceed its {limit_kind} limit: limit {unit}{limit}{suffix}, "
            f"spent {unit}{spent}{suffix}, reserved {unit}{reserved}{suffix}, "
            f"this request needs up to {unit}{requested}{suffix}"
        )
        if detail:
            message += f" ({detail})"
        self._message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only __init__: pickle (multiprocessing, task queues) needs help to rebuild it.
        return (_rebuild_budget_exceeded, (self.__dict__.copy(),))


def _rebuild_budget_exceeded(state: dict[str, object]) -> BudgetExceeded:
    exc = BudgetExceeded.__new__(BudgetExceeded)
    exc.__dict__.update(state)
    Exception.__init__(exc, str(state.get("_message", "")))
    return exc


# An exception graph is small; the cap only bounds a pathological one (a generated group).
_MAX_EXCEPTIONS_VISITED = 10_000


def find_budget_exceeded(exc: BaseException | None) -> BudgetExceeded | None:
    """The :class:`BudgetExceeded` behind ``exc``, however a framework wrapped it; else None.

    Frameworks catch a refusal and raise their own error (instructor's retry exception, the
    Agents SDK's ``UserError`` for a failed tool), group it (``ExceptionGroup``, pydantic-ai's
    ``FallbackExceptionGroup``) or keep it in an attribute. This looks at ``exc`` and then,
    breadth-first so the nearest refusal wins, at every exception it leads to:

    - ``__cause__`` and ``__context__`` (also when ``raise ... from None`` hid the context);
    - the members of an exception group;
    - instructor's ``failed_attempts`` (each ``FailedAttempt.exception``);
    - tenacity's ``RetryError.last_attempt`` (a finished future's exception).

    Each exception is visited once, so cycles end. Returns the refusal itself, with its
    ``budget``, ``limit_kind`` and amounts, for the caller to re-raise or report.
    """
    if exc is None:
        return None
    queue: deque[BaseException] = deque((exc,))
    # Keyed by id(); the values keep every visited exception alive so no id is reused meanwhile.
    seen: dict[int, BaseException] = {}
    while queue and len(seen) < _MAX_EXCEPTIONS_VISITED:
        current = queue.popleft()
        if id(current) in seen:
            continue
        seen[id(current)] = current
        if isinstance(current, BudgetExceeded):
            return current
        queue.extend(linked for linked in _linked_exceptions(current) if id(linked) not in seen)
    return None


def _linked_exceptions(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions ``exc`` holds: chained, grouped, or kept by a framework."""
    if exc.__cause__ is not None:
        yield exc.__cause__
    if exc.__context__ is not None:
        yield exc.__context__
    if isinstance(exc, BaseExceptionGroup):
        yield from exc.exceptions
    # Framework attributes, read defensively: a property of a foreign class may raise.
    try:
        attempts = getattr(exc, "failed_attempts", None)  # instructor: [FailedAttempt(n, exception, ...)]
        if isinstance(attempts, list | tuple):
            for attempt in attempts:
                inner = getattr(attempt, "exception", None)
                if isinstance(inner, BaseException):
                    yield inner
        last = getattr(exc, "last_attempt", None)  # tenacity.RetryError: a concurrent.futures.Future
        if last is not None and _finished_future(last):
            inner = last.exception()
            if isinstance(inner, BaseException):
                yield inner
    except Exception:
        return


def _finished_future(value: object) -> bool:
    done = getattr(value, "done", None)
    cancelled = getattr(value, "cancelled", None)
    return (
        callable(done)
        and callable(cancelled)
        and callable(getattr(value, "exception", None))
        and done() is True
        and cancelled() is False
    )


class UnknownModelError(BudgetGuardError, LookupError):
    """No price is known for a model, and no fallback price is configured."""

    def __init__(self, model: str, hint: str = "") -> None:
        self.model = model
        message = f"no price known for model {model!r}"
        if hint:
            message += f"; {hint}"
        message += (
            ". Add a price override (pricing.models in the YAML config, or "
            "budgetguard.configure(prices=...)) or set unknown_model: warn with a fallback price."
        )
        super().__init__(message)


class ConfigError(BudgetGuardError, ValueError):
    """A configuration file or argument is invalid. The message names file, line and key."""

    def __init__(
        self, message: str, *, source: str | None = None, line: int | None = None, key: str | None = None
    ) -> None:
        self.source = source
        self.line = line
        self.key = key
        where = ""
        if source is not None:
            where = source + (f":{line}" if line is not None else "")
        if key is not None:
            where = f"{where} at {key!r}" if where else f"at {key!r}"
        super().__init__(f"{where}: {message}" if where else message)


class EstimateError(BudgetGuardError, ValueError):
    """A request body cannot be estimated (malformed for its endpoint)."""


class StoreError(BudgetGuardError):
    """A ledger store (SQLite, Redis) failed and the budget is configured to fail closed."""


class BudgetGuardWarning(UserWarning):
    """Base class of budgetguard's warnings (soft caps, unknown models, under-reservations)."""


class SoftCapWarning(BudgetGuardWarning):
    """A budget with the ``warn`` policy let a request through past its cap."""


class UnknownModelWarning(BudgetGuardWarning):
    """A model had no known price and a configured fallback price was used."""


class UnderReservedWarning(BudgetGuardWarning):
    """The API billed more than was reserved for a call; the ledger records the truth."""


class EstimatedUsageWarning(BudgetGuardWarning):
    """A call's usage was not reported by the server and was charged from an estimate."""


class OutputCapWarning(BudgetGuardWarning):
    """A request without an output cap of its own was given one so that it fits a budget."""
