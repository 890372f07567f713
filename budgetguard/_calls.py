"""One API call's life, from the moment its body is known to the moment it is paid for.

A :class:`Call` is a small state machine::

    PLANNED --reserve--> RESERVED --send--> SENT --(a stream or raw body)--> READING
    SENT | READING --usage read--> SETTLED
    SENT | READING --usage never seen--> ESTIMATED        (charged from its estimate)
    PLANNED | RESERVED | SENT --failed, not billed--> RELEASED

Each terminal transition happens exactly once (under one lock). A call being read is owned by
the scope *entry* it was made in (see ``budgetguard._context``): when that entry ends, the call
ends if its reader abandoned it; other entries of the same scope object never touch it.

Providers (``budgetguard._providers``) create calls, tell them what the SDK sees (usage read,
visible output, a stream's end) and give them a :class:`StreamReader` to drain a stream the
caller closed; this module knows no SDK. Settlement never runs inside a garbage-collection
finalizer (one may fire while a ledger lock is held): such ends are deferred to the next safe
point (a call starting, an entry ending, interpreter exit).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Protocol

from budgetguard import _context, _events
from budgetguard._context import Entry
from budgetguard._errors import (
    BudgetExceeded,
    BudgetGuardError,
    EstimatedUsageWarning,
    OutputCapWarning,
    UnderReservedWarning,
    UnknownModelError,
    UnknownModelWarning,
)
from budgetguard._events import CallRefused, CallSettled
from budgetguard._ledger import Amount, Hold, Refused, SpendRecord, picos_to_usd
from budgetguard._money import to_picos, to_usd
from budgetguard._policies import (
    LowerOutputCap,
    Refusal,
    Refuse,
    SendAnyway,
    WaitThen,
    output_tokens_that_fit,
)
from budgetguard._preflight import Plan, billed_choices, counted_tokens, may_hide_output, plan_request
from budgetguard._scopes import Budget, Scope
from budgetguard._settings import current_settings
from budgetguard._usage import TokenCounts, Usage
from budgetguard._warnings import warn

__all__ = [
    "DRAIN_EVENTS",
    "Call",
    "ReservationWatch",
    "StreamReader",
    "count_text_tokens",
    "settle_deferred",
    "watching",
]

# States. Plain ints: every call compares them a few times.
PLANNED, RESERVED, SENT, READING, SETTLED, ESTIMATED, RELEASED = range(7)
_STATE_NAMES = ("planned", "reserved", "sent", "reading", "settled", "estimated", "released")
_TERMINAL = SETTLED

#: Events read from a closed stream whose end was in sight, to find the usage it carries.
DRAIN_EVENTS = 16
#: The fewest output tokens an automatic output cap gives a request; below, it is refused.
MIN_AUTO_OUTPUT_TOKENS = 16


class StreamReader(Protocol):
    """How a provider reads more of a stream its caller stopped reading (bounded)."""

    def pull(self, limit: int) -> None:
        """Read up to ``limit`` more events (each is reported to the call as usual)."""

    async def apull(self, limit: int) -> None: ...


class ReservationWatch:
    """The largest reservation made while it is active: what a retried step needs at least."""

    def __init__(self) -> None:
        self.peak: Amount | None = None

    def saw(self, amount: Amount) -> None:
        peak = self.peak
        self.peak = (
            amount
            if peak is None
            else Amount(
                max(peak.picos, amount.picos),
                max(peak.tokens, amount.tokens),
                max(peak.requests, amount.requests),
            )
        )


_watch: contextvars.ContextVar[ReservationWatch | None] = contextvars.ContextVar(
    "budgetguard_reservation_watch", default=None
)


def watching() -> contextvars.ContextVar[ReservationWatch | None]:
    """The contextvar the retry decorator sets so it can see what its attempts reserved."""
    return _watch


_count_text: Callable[[str, str], int] | None = None


def count_text_tokens(model: str, text: str) -> int:
    """Plain tokens of visible output (the estimator is imported on first use)."""
    global _count_text
    if _count_text is None:
        from budgetguard._estimate import count_text

        _count_text = count_text
    return _count_text(model, text)


# Calls whose end was seen where settling is unsafe (a garbage-collection finalizer):
# list.append and list.pop are atomic, so finalizers and threads may use it without a lock.
_deferred: list[Call] = []
# Guards every call's state (settle, release and a stream's finalizer may race). One lock for
# all calls rather than one per call: it is held only to read and change one integer.
_state_lock = threading.Lock()
_NOTHING = Amount()
# Calls being read, for interpreter exit (a dict changed only under _reading_lock).
_reading: dict[Call, None] = {}
_reading_lock = threading.Lock()


def settle_deferred() -> None:
    """End the calls whose end was deferred; runs when a call starts and when an entry ends."""
    while _deferred:
        try:
            call = _deferred.pop()
        except IndexError:  # another thread took the last one
            return
        call.abandon(drain=True)


def _chain(entries: tuple[Entry, ...]) -> tuple[tuple[Entry, ...], tuple[Scope, ...], tuple[Budget, ...]]:
    """What every call made under ``entries`` is charged to: the scopes, each once (one entered
    twice, nested in itself, is charged once), and the budgets innermost first (the tightest
    cap refuses before outer budgets are touched). Kept on the innermost entry."""
    scopes: tuple[Scope, ...] = tuple(dict.fromkeys(entry.scope for entry in entries))
    return entries, scopes, tuple(scope for scope in reversed(scopes) if isinstance(scope, Budget))


class Call:
    """One logical request (all its SDK retries) inside one or more scopes."""

    # One is built per API call: slots make that, and every attribute read after it, cheaper.
    __slots__ = (
        "__weakref__",
        "_edited",
        "_last_usage",
        "_server_count",
        "_text",
        "attempts",
        "auto_capped",
        "body",
        "book",
        "budgets",
        "count_input_tokens",
        "endpoint",
        "entries",
        "finishing",
        "holds",
        "known_input",
        "leftover",
        "model",
        "origin",
        "output_cap",
        "owner",
        "plan",
        "priced",
        "provider",
        "reader",
        "reserved",
        "scopes",
        "started",
        "state",
        "stream",
        "stream_started",
        "wire_state",
    )  # fmt: skip

    def __init__(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        entries: tuple[Entry, ...],
        count_input_tokens: Callable[[], Any] | None = None,
        provider: str = "openai",
        region_url: object = None,
    ) -> None:
        self.started = time.monotonic()
        capture = _events.origin_capture
        self.origin = capture() if capture is not None else None
        self.provider = provider
        self.endpoint = endpoint
        # Exact mode: asks the server to count input tokens (provider-made; sync or async).
        self.count_input_tokens = count_input_tokens
        # The prices in force when the call is made: looked up once, to check, reserve and settle.
        self.book = current_settings().price_book()
        if region_url is not None:  # a data-residency host: prices with its uplift
            self.book = self.book.for_base_url(region_url)
        # The body to send: the caller's mapping until budgetguard changes it (see edit_body).
        self.body: Mapping[str, Any] = body
        self._edited: dict[str, Any] | None = None
        self.entries = entries
        owner = self.owner = entries[-1]
        chain = owner.derived
        if chain is None or chain[0] is not entries:
            chain = owner.derived = _chain(entries)
        self.scopes: tuple[Scope, ...] = chain[1]
        self.budgets: tuple[Budget, ...] = chain[2]
        self.model = str(body.get("model") or "")
        self.stream = bool(body.get("stream"))
        self.holds: list[tuple[Budget, Hold]] = []
        self.plan: Plan | None = None
        #: False for a model without a price, let through because no budget caps dollars.
        self.priced = True
        #: The output cap budgetguard set (auto cap or clamp), and whether it was an auto cap.
        self.output_cap: int | None = None
        self.auto_capped = False
        self.reserved = _NOTHING
        self.state = PLANNED
        self.attempts = 0
        self.stream_started = False
        #: The stream showed its end is near (a finish_reason, a final ".done" event): reading
        #: a few more events finds its usage.
        self.finishing = False
        self.reader: StreamReader | None = None
        #: What a stream collected by the garbage collector left to read (drained later).
        self.leftover: StreamReader | None = None
        self._text: list[str] = []
        self._last_usage: tuple[TokenCounts, str | None, str | None] | None = None
        self.known_input: TokenCounts | None = None
        #: Scratch state of the provider that reads this call's responses (running usage).
        self.wire_state: Any = None
        self._server_count: int | None = None

    def __repr__(self) -> str:
        return f"<Call {self.endpoint} {self.model!r} {_STATE_NAMES[self.state]}>"

    @property
    def finished(self) -> bool:
        return self.state >= _TERMINAL

    # ------------------------------------------------------------------ planned -> reserved
    def reserve(self) -> Mapping[str, Any]:
        """Check the price and reserve the worst case in every budget. Returns the body to
        send: the one it was given unless budgetguard changed it (then a copy)."""
        if _deferred:
            settle_deferred()
        self._check_model()
        if self.budgets:
            for delay in self._reservation_steps():
                time.sleep(delay)
        self.state = RESERVED
        return self.body

    async def reserve_async(self, sleep: Callable[[float], Awaitable[None]]) -> Mapping[str, Any]:
        if _deferred:
            settle_deferred()
        self._check_model()
        if self.budgets:
            count = self.count_input_tokens
            # Exact mode: an async client's count must be awaited before the (sync) planner runs.
            if count is not None and current_settings().exact_estimates and not self._local_count_is_exact():
                self._server_count = counted_tokens(await count())
            for delay in self._reservation_steps():
                await sleep(delay)
        self.state = RESERVED
        return self.body

    def _check_model(self) -> None:
        if not self.model:
            # A stored prompt can name its model server-side; then only the response says it.
            if self.budgets:
                raise BudgetGuardError(
                    f"a {self.endpoint} request without a model cannot be reserved inside budget "
                    f"{self.budgets[0].name!r}: budgetguard cannot price it before it is sent; pass "
                    "model= explicitly"
                )
            return
        try:
            self.book.resolve(self.model)
        except UnknownModelError:
            # Only a dollar cap needs a price: refuse now, before anything is sent or billed.
            if any(budget.limits.picos is not None for budget in self.budgets):
                raise
            self.priced = False
            _warn_unpriced(self.model)

    def _local_count_is_exact(self) -> bool:
        from budgetguard._estimate import count_request

        return count_request(self.endpoint, self.body).exact

    def edit_body(self) -> dict[str, Any]:
        """The body to change: copied on the first change, so the caller's mapping never is."""
        body = self._edited
        if body is None:
            body = self.body = self._edited = dict(self.body)
        return body

    def _plan(self) -> Plan:
        plan = self.plan
        if plan is None:
            assume = None
            for budget in self.budgets:  # the innermost budget that sets it
                if budget.assume_output_tokens:
                    assume = budget.assume_output_tokens
                    break
            exact_mode = current_settings().exact_estimates and self._server_count is None
            plan = self.plan = plan_request(
                self.endpoint,
                self.body,
                assume_output_tokens=assume,
                count_input_tokens=self.count_input_tokens if exact_mode else None,
                server_prompt_tokens=self._server_count,
                priced=self.priced,
                book=self.book,
            )
        return plan

    def _amount(self, output_tokens: int | None = None) -> Amount:
        plan = self._plan()
        prompt = plan.tokens.prompt_tokens_upper
        if output_tokens is None:
            return Amount(plan.max_picos, prompt + plan.reserved_output_tokens, 1)
        return Amount(self._picos_with_output(output_tokens), prompt + output_tokens, 1)

    def _picos_with_output(self, output_tokens: int) -> int:
        plan = self._plan()
        return self.book.max_cost_picos(
            self.model,
            plan.tokens.prompt_tokens_upper,
            output_tokens,
            service_tier=plan.service_tier,
            audio=plan.audio,
            images=plan.images,
        )

    def _reservation_steps(self) -> Iterator[float]:
        """Reserve in every budget, asking refusing budgets' policies what to do; yields the
        seconds to sleep when a policy waits. One generator serves sync and async alike."""
        amount = self._amount()
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            refused = self._try_reserve_all(amount, started, attempt)
            if refused is None:
                return
            budget, refusal, decision = refused
            if isinstance(decision, WaitThen):
                yield decision.seconds
            elif isinstance(decision, LowerOutputCap):
                choices = billed_choices(self.endpoint, self.body)
                self.edit_body()[_cap_field(self.endpoint, self.body)] = decision.tokens_per_choice
                self.output_cap = decision.tokens_per_choice
                amount = self._amount(decision.tokens_per_choice * choices)
            else:
                exceeded = self._exceeded(
                    budget, refusal, decision.detail if isinstance(decision, Refuse) else ""
                )
                if _events.wanted(logging.WARNING):
                    _publish_refusal(self, exceeded)
                if budget.ledger.keeps_records:
                    self._record_refusal(budget, refusal)
                raise exceeded

    def _try_reserve_all(
        self, amount: Amount, started: float, attempt: int
    ) -> tuple[Budget, Refused, object] | None:
        """Reserve ``amount`` in every budget, innermost first. On a refusal the budget's
        policy decides; unless it lets the request through, every hold taken is rolled back
        and the refusal returned with the decision. Any error rolls back too."""
        holds: list[tuple[Budget, Hold]] = []
        try:
            for budget in self.budgets:
                outcome = budget.reserve(amount)
                if isinstance(outcome, Refused):
                    refusal = self._refusal(budget, outcome, amount, started, attempt)
                    decision = self._auto_output_cap(budget, refusal) or budget.policy.decide(refusal)
                    if not isinstance(decision, SendAnyway):
                        _roll_back(holds)
                        return budget, outcome, decision
                    budget.soft_cap_crossed(outcome)  # may raise (a warning turned into an error)
                    outcome = budget.reserve(amount, enforce=False)
                    if isinstance(outcome, Refused):  # pragma: no cover - unenforced never refuses
                        raise AssertionError("an unenforced reservation was refused")
                holds.append((budget, outcome))
        except BaseException:
            _roll_back(holds)
            raise
        self.holds = holds
        self.reserved = amount
        watch = _watch.get()
        if watch is not None:
            watch.saw(amount)
        return None

    def _auto_output_cap(self, budget: Budget, refusal: Refusal) -> LowerOutputCap | None:
        """A request without an output cap of its own, whose assumed maximum output does not
        fit, is given the cap that fits in half of this budget's remaining room, never above
        the model's maximum: each uncapped call leaves room for the next, so concurrent ones
        never starve each other (and a lone agent's unused reservation returns when it
        settles). None when that leaves fewer than MIN_AUTO_OUTPUT_TOKENS."""
        plan = self._plan()
        if not budget.auto_output_cap or (plan.tokens.max_output_tokens is not None and not self.auto_capped):
            return None
        if refusal.kind == "requests":
            return None
        per_choice = output_tokens_that_fit(refusal, refusal.room // 2)
        if (
            per_choice is None
            or per_choice < MIN_AUTO_OUTPUT_TOKENS
            or per_choice * refusal.choices >= refusal.output_tokens
        ):
            return None
        if not self.auto_capped:
            self.auto_capped = True
            _warn_auto_capped(budget, self.model, per_choice, plan.reserved_output_tokens // refusal.choices)
        return LowerOutputCap(per_choice)

    def _refusal(
        self, budget: Budget, refused: Refused, amount: Amount, started: float, attempt: int
    ) -> Refusal:
        kind = refused.kind
        plan = self._plan()
        prompt = plan.tokens.prompt_tokens_upper
        cost: Callable[[int], int] | None
        if kind == "requests" or self.endpoint == "embeddings":
            cost = None
        elif kind == "tokens":
            cost = prompt.__add__
        else:
            cost = self._picos_with_output
        return Refusal(
            kind=kind,
            limit=refused.limit,
            spent=refused.spent.get(kind),
            reserved=refused.reserved.get(kind),
            requested=refused.requested.get(kind),
            waited=time.monotonic() - started,
            attempt=attempt,
            room_appears_in=budget.room_appears_in(refused),
            choices=billed_choices(self.endpoint, self.body),
            output_tokens=amount.tokens - prompt,
            cost_with_output=cost,
        )

    def _exceeded(self, budget: Budget, refused: Refused, detail: str) -> BudgetExceeded:
        def unit(value: int) -> Decimal | int:
            return picos_to_usd(value) if refused.kind == "usd" else value

        return BudgetExceeded(
            budget=budget.name,
            key=budget.key,
            limit_kind=refused.kind,
            limit=unit(refused.limit),
            spent=unit(refused.spent.get(refused.kind)),
            reserved=unit(refused.reserved.get(refused.kind)),
            requested=unit(refused.requested.get(refused.kind)),
            spent_usd=refused.spent.usd,
            reserved_usd=refused.reserved.usd,
            requested_usd=refused.requested.usd,
            limit_usd=budget.max_usd,
            detail=detail,
        )

    def _record_refusal(self, budget: Budget, refused: Refused) -> None:
        """A refusal is a record too (nothing spent), so reports can show refusals over time.
        Best effort: the refusal itself is raised whatever the store does."""
        record = SpendRecord(
            time=time.time(),
            budget=budget.name,
            key=budget.key,
            scope_path="/".join(scope.name for scope in self.scopes),
            model=self.model,
            endpoint=self.endpoint,
            usage=Usage(),
            reserved_usd=Decimal(0),
            extra={
                "call_id": uuid.uuid4().hex,
                "outcome": "refused",
                "limit": refused.kind,
                "requested_usd": str(refused.requested.usd),
            },
        )
        with contextlib.suppress(Exception):  # the reservation's own error is what the caller sees
            budget.settle(None, _NOTHING, record)

    # ------------------------------------------------------------------ reserved -> sent
    def sent(self) -> None:
        """The SDK is sending the request (called once per attempt)."""
        self.attempts += 1
        if self.state == RESERVED:
            self.state = SENT

    def reading(self, reader: StreamReader | None = None) -> None:
        """The SDK returned a stream or a raw body the caller will read: the owning entry
        ends it if the caller abandons it."""
        if self.state not in (RESERVED, SENT):
            return
        self.state = READING
        self.reader = reader
        with _reading_lock:
            _reading[self] = None
        self.owner.adopt(self)

    # ------------------------------------------------------------------ what the SDK saw
    def saw_usage(self, counts: TokenCounts, model: str | None, service_tier: str | None) -> None:
        """The server reported usage. A plain body settles at once; a stream keeps the last
        report until it ends (its usage chunk may come before the last events)."""
        if self.stream:
            self._last_usage = (counts, model, service_tier)
        else:
            self.settle(counts, model, service_tier)

    def saw_input_usage(self, counts: TokenCounts) -> None:
        """The server reported the input side before the output (a stream's first event): a
        call cut short is charged this input, not the estimate's."""
        self.known_input = counts

    def saw_text(self, text: str) -> None:
        """Visible output, kept only to estimate a call whose usage never comes."""
        self._text.append(text)

    def stream_ended(self, *, completed: bool) -> None:
        """The stream was read to its end (``completed``) or stopped (error, cut, abandoned)."""
        if self.finished:
            return
        last = self._last_usage
        if last is not None:
            self.settle(*last)
        else:
            self.settle_estimated(
                "the stream carried no usage"
                if completed
                else "the stream ended before the server reported usage"
            )

    # ------------------------------------------------------------------ ending a call being read
    def close(self) -> None:
        """The caller closed the stream (sync): read on a little if its end was in sight."""
        self.abandon(drain=True)

    async def aclose(self) -> None:
        if self.finished:
            return
        reader = self.reader
        if reader is not None and self.finishing:
            with contextlib.suppress(Exception):  # the connection is gone: charge what was seen
                await reader.apull(DRAIN_EVENTS)
        self.abandon(drain=False)

    def abandon(self, *, drain: bool) -> None:
        """Nobody will read this call any more: find its usage where that is cheap (what is
        already read, or a few events when the stream's end was in sight), else charge it
        conservatively."""
        if self.finished:
            return
        reader = self.leftover or self.reader
        if drain and reader is not None:
            with contextlib.suppress(Exception):  # the connection is gone: charge what was seen
                reader.pull(DRAIN_EVENTS if self.finishing else 0)
        if self.finished:
            return
        if not self.stream_started and not self._text:
            # Never read: the server generated (and billed) output nobody saw.
            self.settle_worst_case("its response was never read")
            return
        self.stream_ended(completed=False)

    def read_what_is_there(self) -> None:
        """Settle from what the caller already read (a raw body), without any I/O."""
        reader = self.reader
        if reader is not None and not self.finished:
            with contextlib.suppress(Exception):
                reader.pull(0)

    def collected(self, leftover: StreamReader | None = None) -> None:
        """The garbage collector took the object being read: end the call at a safe point."""
        if not self.finished:
            self.leftover = leftover
            _deferred.append(self)

    # ------------------------------------------------------------------ -> settled | estimated
    def settle(self, counts: TokenCounts, response_model: str | None, service_tier: str | None) -> None:
        """Replace every reservation with what the server reported."""
        book = self.book
        # Price the model that answered (a dated snapshot may be priced apart); fall back to
        # the model asked for when the answering name is unknown.
        model = self.model
        if response_model and response_model != model and book.knows(response_model):
            model = response_model
        try:
            units, exponent = book.price(counts, model, service_tier)
        except UnknownModelError:  # let through unpriced (see _check_model)
            self._finish(counts, 0, 0, model, response_model or self.model, SETTLED)
            return
        self._finish(counts, units, exponent, None, response_model or self.model, SETTLED)

    def settle_estimated(self, reason: str) -> None:
        """Charge a billed call whose usage we never saw: prompt estimate plus the output it
        may have billed. A model that may bill hidden output (reasoning) is charged its
        reserved output, not only what was seen."""
        if self.finished:
            return
        try:
            plan = self._plan()
        except Exception:  # a body we cannot estimate: charge what was reserved, if anything
            self._finish_estimated(self.reserved.tokens, 0, f"from its reservation: {reason}")
            return
        seen = count_text_tokens(self.model, "".join(self._text)) if self._text and self.model else 0
        if may_hide_output(self.model, self.body):
            completion = max(seen, plan.reserved_output_tokens)
            how = f"at its reserved output (the model may bill hidden reasoning tokens): {reason}"
        else:
            completion, how = seen, f"from its estimate: {reason}"
        known = self.known_input
        if known is not None:  # the server already reported the input (Anthropic's message_start)
            self._finish_estimated(known.prompt_tokens, completion, how, known)
        else:
            self._finish_estimated(plan.tokens.prompt_tokens_upper, completion, how)

    def settle_worst_case(self, reason: str) -> None:
        """Charge a billed call whose usage will never be seen at its reserved worst case."""
        if self.finished:
            return
        try:
            plan = self._plan()
            prompt, completion = plan.tokens.prompt_tokens_upper, plan.reserved_output_tokens
        except Exception:
            prompt, completion = self.reserved.tokens, 0
        self._finish_estimated(prompt, completion, f"at its worst case: {reason}")

    def _finish_estimated(
        self, prompt: int, completion: int, how: str, input_counts: TokenCounts | None = None
    ) -> None:
        counts = (
            TokenCounts(prompt, completion)
            if input_counts is None
            else input_counts._replace(completion_tokens=completion)
        )
        try:
            units, exponent = self.book.price(counts, self.model)
            unpriced = None
        except UnknownModelError:  # no model (a stored prompt) or one let through unpriced
            units = exponent = 0
            unpriced = self.model or "(model not named)"
        # Books first: a warning turned into an error must not lose the spend.
        self._finish(counts, units, exponent, unpriced, self.model, ESTIMATED)
        warn(
            f"budgetguard charged a {self.endpoint} call to {self.model!r} "
            f"({prompt} prompt + {completion} completion tokens) {how}",
            EstimatedUsageWarning,
        )

    def _end(self, state: int) -> bool:
        """Take the one terminal transition; False if another path already took it."""
        with _state_lock:
            if self.state >= _TERMINAL:
                return False
            reading = self.state == READING
            self.state = state
        if reading:
            self.owner.drop(self)
            with _reading_lock:
                _reading.pop(self, None)
        self.reader = self.leftover = None
        return True

    def _finish(
        self, counts: TokenCounts, units: int, exponent: int, unpriced: str | None, model: str, state: int
    ) -> None:
        """Charge every scope (and decorated function) the call ran in: ``counts`` at a cost of
        ``units * 10**exponent`` dollars, or, for a model without a price, ``unpriced``.

        The hot path of every call: it stays in integers. The ``Usage`` value is built only
        for what needs one (records, events, the under-reservation warning)."""
        if not self._end(state):
            return
        estimated = state == ESTIMATED
        usage: Usage | None = None
        over = False
        errors: list[BaseException] = []
        if self.budgets:
            actual = Amount(to_picos(units, exponent), counts[0] + counts[1], 1)
            call_id = ""
            # Every budget held its share, or (refused, failed before reserving) none did.
            holds: list[tuple[Budget, Hold | None]] = list(self.holds) or [(b, None) for b in self.budgets]
            for budget, hold in holds:
                if hold is not None and (
                    actual.picos > hold.amount.picos or actual.tokens > hold.amount.tokens
                ):
                    over = True
                try:
                    # A ledger that keeps no records (the in-memory default) is not given one.
                    record = None
                    if budget.ledger.keeps_records:
                        call_id = call_id or uuid.uuid4().hex
                        if usage is None:
                            usage = _usage(counts, units, exponent, unpriced, estimated)
                        record = self._record(budget, usage, model, estimated, call_id)
                    budget.settle(hold, actual, record)
                except BaseException as exc:  # every other budget is still settled
                    errors.append(exc)
        for scope in self.scopes:
            scope.add_request(model, counts, units, exponent, estimated, unpriced)
        credited: list[object] = []
        for entry in self.entries:  # decorated functions' tallies, each once
            tally = entry.tally
            if tally is not None and tally not in credited:
                credited.append(tally)
                tally.add_request(model, counts, units, exponent, estimated, unpriced)
        # User callbacks run only once every scope's books are complete.
        for budget in self.budgets:
            if budget.alerts:
                try:
                    budget.check_alerts()
                except BaseException as exc:
                    errors.append(exc)
        if _events.wanted(logging.WARNING if over else logging.DEBUG):
            if usage is None:
                usage = _usage(counts, units, exponent, unpriced, estimated)
            _events.publish(
                CallSettled(
                    self.provider,
                    self.endpoint,
                    self.model,
                    model if model != self.model else None,
                    usage,
                    estimated,
                    tuple(budget.name for budget in self.budgets),
                    "/".join(scope.name for scope in self.scopes),
                    self.reserved.usd,
                    self.reserved.tokens,
                    over,
                    time.monotonic() - self.started,
                    self.origin,
                )
            )
        if errors:
            raise errors[0]
        if over:
            warn(
                f"the API billed more than budgetguard reserved for a {self.endpoint} call to {model!r}: "
                f"reserved ${self.reserved.usd} / {self.reserved.tokens} tokens, billed "
                f"${to_usd(units, exponent)} / {counts[0] + counts[1]} tokens; the ledger records what "
                "was billed",
                UnderReservedWarning,
            )

    def _record(self, budget: Budget, usage: Usage, model: str, estimated: bool, call_id: str) -> SpendRecord:
        extra = {"call_id": call_id}  # one call charged to several budgets is one call in reports
        if self.output_cap is not None:
            extra["output_cap"] = f"{'auto' if self.auto_capped else 'clamp'}:{self.output_cap}"
        return SpendRecord(
            time=time.time(),
            budget=budget.name,
            key=budget.key,
            scope_path="/".join(scope.name for scope in self.scopes),
            model=model,
            endpoint=self.endpoint,
            usage=usage,
            reserved_usd=self.reserved.usd,
            estimated=estimated,
            extra=extra,
        )

    # ------------------------------------------------------------------ -> released
    def release(self) -> BaseException | None:
        """The request failed without being billed: drop every hold. Reaches every budget;
        returns the first error a ledger raised (its hold then expires with its TTL)."""
        if not self._end(RELEASED):
            return None
        return _roll_back(self.holds)


def _usage(counts: TokenCounts, units: int, exponent: int, unpriced: str | None, estimated: bool) -> Usage:
    """One settled call as a ``Usage`` value (built only when something reads it)."""
    if unpriced is not None:
        return Usage.of_unpriced_request(counts, unpriced, estimated)
    return Usage.of_request(counts, to_usd(units, exponent), estimated)


_warned_unpriced: set[str] = set()
_warned_capped: set[int] = set()


def _warn_auto_capped(budget: Budget, model: str, tokens: int, maximum: int) -> None:
    """Once per budget: requests without an output cap are being capped to fit it."""
    if id(budget) in _warned_capped:
        return
    _warned_capped.add(id(budget))
    warn(
        f"a request to {model!r} had no output cap and its maximum output ({maximum} tokens) did "
        f"not fit budget {budget.name!r}: budgetguard set its output cap to {tokens} tokens (and "
        "caps later uncapped requests in this budget the same way). Set max_tokens / "
        "max_output_tokens yourself, or Budget(auto_output_cap=False) to refuse instead",
        OutputCapWarning,
    )


def _warn_unpriced(model: str) -> None:
    """Once per model: a model without a price is counted, not priced, and how to fix it."""
    if model in _warned_unpriced:
        return
    _warned_unpriced.add(model)
    warn(
        f"budgetguard has no price for model {model!r}: its tokens are counted and its cost is not "
        f"(usage.unpriced_requests). Give it one with budgetguard.configure(prices={{{model!r}: "
        "{'input': ..., 'output': ...}}) (dollars per million tokens) or map it to a priced model "
        f"with aliases={{{model!r}: 'gpt-4o-mini'}}; a budget with max_usd refuses it until then",
        UnknownModelWarning,
    )


def _publish_refusal(call: Call, exceeded: BudgetExceeded) -> None:
    _events.publish(
        CallRefused(
            call.provider,
            call.endpoint,
            call.model,
            exceeded.budget,
            exceeded.key,
            exceeded.limit_kind,
            exceeded.limit,
            exceeded.spent,
            exceeded.reserved,
            exceeded.requested,
            exceeded.detail,
            call.origin,
        )
    )


def _roll_back(holds: list[tuple[Budget, Hold]]) -> BaseException | None:
    """Release every hold; the first error is returned, after all were tried."""
    first: BaseException | None = None
    for budget, hold in holds:
        try:
            budget.release(hold)
        except BaseException as exc:
            first = first or exc
    return first


def _cap_field(endpoint: str, body: Mapping[str, Any]) -> str:
    if endpoint == "responses":
        return "max_output_tokens"
    if endpoint in ("completions", "anthropic.messages"):
        return "max_tokens"
    # Chat: keep the field the caller used; otherwise the current one (o-series reject max_tokens).
    return (
        "max_tokens"
        if "max_tokens" in body and "max_completion_tokens" not in body
        else "max_completion_tokens"
    )


# -- entries ending -----------------------------------------------------------------------------


def _end_owned(entry: Entry) -> None:
    """An entry ended: end the calls it owns that their reader abandoned."""
    if _deferred:
        settle_deferred()
    for call in entry.close():
        if isinstance(call, Call):
            _end_at_entry_end(call)


async def _end_owned_async(entry: Entry) -> None:
    if _deferred:
        settle_deferred()
    for call in entry.close():
        if isinstance(call, Call) and not call.finished:
            if call.stream_started:
                await call.aclose()
            else:
                _end_at_entry_end(call)


def _end_at_entry_end(call: Call) -> None:
    if call.finished:
        return
    if call.stream_started:
        call.abandon(drain=True)  # started and not finished: the caller broke out of it
    else:
        # A raw body the caller read settles now. Never read: it may be read after its entry
        # (a function returning a stream); its end, close or finalizer settles it.
        call.read_what_is_there()


_context.on_entry_end(_end_owned, _end_owned_async)


@atexit.register
def _settle_at_exit() -> None:
    """Calls still being read when the interpreter exits were billed: charge them now."""
    settle_deferred()
    with _reading_lock:
        calls = list(_reading)
    for call in calls:
        call.abandon(drain=False)
