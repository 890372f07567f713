"""One API call's path: estimate, reserve in every budget, then settle or release.

``instrument`` creates a :class:`MeteredCall` for each request made inside a scope and
reports to it what the SDK sees (the response body, stream events, errors); this module turns
that into reservations, ledger records and usage tallies. It knows no SDK internals.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from budgetguard._errors import (
    BudgetExceeded,
    BudgetGuardError,
    BudgetGuardWarning,
    EstimatedUsageWarning,
    UnderReservedWarning,
)
from budgetguard._estimate import count_text
from budgetguard._ledger import Amount, Hold, Refused, SpendRecord, picos_to_usd
from budgetguard._policies import Clamp, Wait, Warn
from budgetguard._preflight import Plan, billed_choices, plan_request, server_counter
from budgetguard._scopes import Budget, Scope
from budgetguard._settings import current_settings
from budgetguard._usage import TokenCounts, Usage, UsageFormatError

__all__ = [
    "MeteredCall",
    "ReservationWatch",
    "defer_stream_end",
    "endpoint_of",
    "settle_deferred",
    "unmetered_warning",
    "watching",
]


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


def endpoint_of(method: str, url: str) -> str | None:
    """The billed endpoint a request goes to, or None for anything budgetguard does not meter."""
    if method.lower() != "post":
        return None
    path = url.split("?", 1)[0].rstrip("/")
    # Order matters: "/chat/completions" also ends with "/completions".
    if path.endswith("/chat/completions"):
        return "chat.completions"
    if path.endswith("/completions"):
        return "completions"
    if path.endswith(("/responses", "/responses/compact")):
        return "responses"  # compaction is billed like a response and reports its usage
    if path.endswith("/embeddings"):
        return "embeddings"
    return None


# Billed endpoints budgetguard cannot price: a capped budget warns that they pass uncounted.
_UNMETERED_BILLED = (
    "/images/generations", "/images/edits", "/images/variations", "/audio/speech",
    "/audio/transcriptions", "/audio/translations", "/videos",
)  # fmt: skip
_warned_unmetered: set[str] = set()


def unmetered_warning(method: str, url: str, scopes: tuple[Scope, ...]) -> None:
    """Warn (once per endpoint) that a billed request inside a capped budget is not counted."""
    if method.lower() != "post":
        return
    path = url.split("?", 1)[0].rstrip("/")
    for suffix in _UNMETERED_BILLED:
        if path.endswith(suffix) and suffix not in _warned_unmetered:
            budgets = [s.name for s in scopes if isinstance(s, Budget) and not s.limits.unlimited]
            if budgets:
                _warned_unmetered.add(suffix)
                warnings.warn(
                    f"budgetguard does not meter {path}: its cost is not counted against budget "
                    f"{budgets[-1]!r} (only chat completions, responses, completions and embeddings are)",
                    BudgetGuardWarning,
                    stacklevel=4,
                )
            return


# Streams whose end was seen where settling is unsafe (a garbage-collection finalizer may run
# while a ledger lock is held): settled at the next safe point instead.
_deferred: list[MeteredCall] = []


def defer_stream_end(call: MeteredCall) -> None:
    _deferred.append(call)  # list.append is atomic; safe from a finalizer


def settle_deferred() -> None:
    """Settle streams whose end was deferred; runs when a call starts and when a scope exits."""
    while _deferred:
        try:
            call = _deferred.pop()
        except IndexError:  # another thread took the last one
            return
        if not call.finished:
            call.stream_ended(completed=False)


_STREAM_USAGE_ENDPOINTS = ("chat.completions", "completions")
_TERMINAL_RESPONSE_EVENTS = ("response.completed", "response.incomplete", "response.failed")
_NOTHING = Amount()
# Guards every call's ``finished`` flag (settle, fail and a stream's finalizer may race). One
# lock for all calls rather than one per call: it is held only to flip a flag.
_finish_lock = threading.Lock()


class MeteredCall:
    """The state of one logical request (all its SDK retries) inside one or more scopes."""

    # One is built per API call: slots make that, and every attribute read after it, cheaper.
    __slots__ = (
        "__weakref__",
        "_edited",
        "_last_stream_usage",
        "_saw_final_usage_chunk",
        "_server_count",
        "_text",
        "attempts",
        "body",
        "book",
        "budgets",
        "client",
        "endpoint",
        "estimate",
        "finished",
        "holds",
        "injected_stream_usage",
        "model",
        "raw_response",
        "reserved",
        "scopes",
        "stream",
        "stream_started",
    )  # fmt: skip

    def __init__(
        self, endpoint: str, body: Mapping[str, Any], scopes: tuple[Scope, ...], client: Any = None
    ) -> None:
        self.endpoint = endpoint
        self.client = client  # the SDK client, for exact mode's server-side token count
        # The prices in force when the call is made: looked up once, to check, reserve and settle.
        self.book = current_settings().price_book()
        # The body to send: the caller's mapping until budgetguard changes it (see _edit_body).
        self.body: Mapping[str, Any] = body
        self._edited: dict[str, Any] | None = None
        # A scope entered twice (nested in itself) is still charged once.
        self.scopes = scopes if len(scopes) < 2 else tuple(dict.fromkeys(scopes))
        self.model = str(body.get("model") or "")
        self.stream = bool(body.get("stream"))
        # Innermost first: the tightest cap refuses before outer budgets are touched.
        self.budgets: list[Budget] = [s for s in reversed(self.scopes) if isinstance(s, Budget)]
        self.holds: dict[int, Hold] = {}
        self.estimate: Plan | None = None
        self.reserved = _NOTHING
        self.injected_stream_usage = False
        self.attempts = 0
        self.finished = False
        self.stream_started = False
        self.raw_response: Any = None  # a streaming raw response whose body the caller reads
        self._text: list[str] = []
        self._last_stream_usage: tuple[Mapping[str, Any], str | None, str | None] | None = None
        self._saw_final_usage_chunk = False
        self._server_count: int | None = None

    # ------------------------------------------------------------------ before sending
    def prepare(self) -> Mapping[str, Any]:
        """Check the price, inject stream usage, reserve the worst case. Returns the body to send:
        the one it was given unless budgetguard changed it (then a copy)."""
        if _deferred:
            settle_deferred()
        self._prepare_body()
        if self.budgets:
            self._reserve_all(time.sleep)
        return self.body

    async def prepare_async(self, sleep: Callable[[float], Awaitable[None]]) -> Mapping[str, Any]:
        if _deferred:
            settle_deferred()
        self._prepare_body()
        if self.budgets:
            await self._count_on_server_async()
            await self._reserve_all_async(sleep)
        return self.body

    async def _count_on_server_async(self) -> None:
        """Exact mode for async clients: the server count must be awaited before estimating."""
        from budgetguard._preflight import aserver_input_tokens, needs_server_count

        if not current_settings().exact_estimates:
            return
        if not needs_server_count(self.endpoint, self.body, self.client):
            return
        from budgetguard._estimate import count_request

        if count_request(self.endpoint, self.body).exact:
            return
        self._server_count = await aserver_input_tokens(self.client, self.body)

    def _prepare_body(self) -> None:
        if not self.model:
            # A stored prompt can name its model server-side; then only the response says it.
            if self.budgets:
                raise BudgetGuardError(
                    f"a {self.endpoint} request without a model cannot be reserved inside budget "
                    f"{self.budgets[0].name!r}: budgetguard cannot price it before it is sent; pass "
                    "model= explicitly"
                )
        else:
            # Raise UnknownModelError now, before anything is sent or billed.
            self.book.resolve(self.model)
        if self.stream and self.endpoint in _STREAM_USAGE_ENDPOINTS:
            options = self.body.get("stream_options")
            if not (isinstance(options, Mapping) and options.get("include_usage")):
                merged = dict(options) if isinstance(options, Mapping) else {}
                merged["include_usage"] = True
                self._edit_body()["stream_options"] = merged
                self.injected_stream_usage = True

    def _edit_body(self) -> dict[str, Any]:
        """The body to change: copied on the first change, so the caller's mapping never is."""
        body = self._edited
        if body is None:
            body = self.body = self._edited = dict(self.body)
        return body

    def _estimate(self) -> Plan:
        if self.estimate is None:
            assume = None
            for budget in self.budgets:  # the innermost budget that sets it
                if budget.assume_output_tokens:
                    assume = budget.assume_output_tokens
                    break
            exact_mode = current_settings().exact_estimates and not _is_async_client(self.client)
            self.estimate = plan_request(
                self.endpoint,
                self.body,
                assume_output_tokens=assume,
                client=self.client if exact_mode else None,
                server_prompt_tokens=self._server_count,
            )
        return self.estimate

    def _amount(self, output_tokens: int | None = None) -> Amount:
        est = self._estimate()
        prompt = est.tokens.prompt_tokens_upper
        if output_tokens is None:
            return Amount(est.max_picos, prompt + est.reserved_output_tokens, 1)
        picos = self.book.max_cost_picos(
            self.model,
            prompt,
            output_tokens,
            service_tier=est.service_tier,
            audio=est.audio,
            images=est.images,
        )
        return Amount(picos, prompt + output_tokens, 1)

    def _try_reserve_all(self, amount: Amount) -> tuple[Budget, Refused] | None:
        """Reserve in every budget, innermost first; on a refusal roll back and report it."""
        holds: dict[int, Hold] = {}

        def roll_back() -> None:
            for held_budget in self.budgets:
                hold = holds.get(id(held_budget))
                if hold is not None:
                    held_budget._release(hold)

        for budget in self.budgets:
            outcome = budget._reserve(amount)
            if isinstance(outcome, Refused) and isinstance(budget.policy, Warn):
                try:
                    budget._soft_cap_crossed(outcome)  # a warning-as-error or callback may raise
                except BaseException:
                    roll_back()
                    raise
                outcome = budget._reserve(amount, enforce=False)
            if isinstance(outcome, Refused):
                roll_back()
                return budget, outcome
            holds[id(budget)] = outcome
        self.holds = holds
        self.reserved = amount
        watch = _watch.get()
        if watch is not None:
            watch.saw(amount)
        return None

    def _reservation_steps(self) -> Iterator[float]:
        """Reserve in every budget, applying policies; yields the seconds to sleep whenever a
        ``wait`` policy waits. One generator serves the sync and the async path alike."""
        amount = self._amount()
        started = time.monotonic()
        while True:
            refusal = self._try_reserve_all(amount)
            if refusal is None:
                return
            budget, refused = refusal
            next_amount = self._after_refusal(budget, refused, amount, time.monotonic() - started)
            if next_amount is None:
                yield self._wait_seconds(budget, time.monotonic() - started)
            else:
                amount = next_amount

    def _reserve_all(self, sleep: Callable[[float], None]) -> None:
        for delay in self._reservation_steps():
            sleep(delay)

    async def _reserve_all_async(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        for delay in self._reservation_steps():
            await sleep(delay)

    def _after_refusal(
        self, budget: Budget, refused: Refused, amount: Amount, waited: float
    ) -> Amount | None:
        """Apply the refusing budget's policy: a smaller amount to try, None to wait, or raise."""
        policy = budget.policy
        if isinstance(policy, Clamp):
            return self._clamp(budget, refused, amount, policy)
        if (
            isinstance(policy, Wait)
            and waited < policy.max_wait
            and _may_free_up(budget, refused, policy.max_wait - waited)
        ):
            return None
        raise self._exceeded(budget, refused, detail=_why(policy, waited))

    def _wait_seconds(self, budget: Budget, waited: float) -> float:
        from budgetguard._waiting import next_wait

        policy = budget.policy
        max_wait = policy.max_wait if isinstance(policy, Wait) else 0.0
        return next_wait(budget, waited, max_wait)

    def _clamp(self, budget: Budget, refused: Refused, amount: Amount, policy: Clamp) -> Amount:
        est = self._estimate()
        if refused.kind == "requests" or self.endpoint == "embeddings":
            raise self._exceeded(budget, refused, detail="clamp cannot lower a request count or an embedding")
        room = refused.limit - refused.spent.get(refused.kind) - refused.reserved.get(refused.kind)
        book = self.book
        if refused.kind == "tokens":
            fits = room - est.tokens.prompt_tokens_upper
        else:
            pricing: dict[str, Any] = {
                "service_tier": est.service_tier,
                "audio": est.audio,
                "images": est.images,
            }
            _, prompt_usd = book.cost_bounds(self.model, est.tokens.prompt_tokens_upper, 0, **pricing)
            _, one_more = book.cost_bounds(self.model, est.tokens.prompt_tokens_upper, 1, **pricing)
            per_token = one_more - prompt_usd
            spare = picos_to_usd(room) - prompt_usd
            fits = math.floor(spare / per_token) if per_token > 0 else 0
        choices = billed_choices(self.endpoint, self.body)
        per_choice = fits // choices
        current = amount.tokens - est.tokens.prompt_tokens_upper
        if per_choice < policy.min_output_tokens or per_choice * choices >= current:
            raise self._exceeded(
                budget,
                refused,
                detail=f"clamp: only {max(per_choice, 0)} output tokens would fit, "
                f"the minimum is {policy.min_output_tokens}",
            )
        self._edit_body()[_cap_field(self.endpoint, self.body)] = per_choice
        return self._amount(per_choice * choices)

    def _exceeded(self, budget: Budget, refused: Refused, *, detail: str = "") -> BudgetExceeded:
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

    # ------------------------------------------------------------------ after sending
    def observe(self, data: Any) -> None:
        """Read one response body or stream event the SDK parsed."""
        if self.finished or (type(data) is not dict and not isinstance(data, Mapping)):
            return
        inner = data.get("data")
        if "event" in data and isinstance(inner, Mapping):
            data = inner  # the SDK's synthesized {"event": ..., "data": ...} shape
        kind = data.get("type")
        if isinstance(kind, str) and kind.startswith("response."):
            self._observe_response_event(kind, data)
            return
        usage = data.get("usage")
        if self.stream:
            self._collect_text(data)
            if isinstance(usage, Mapping):
                self._last_stream_usage = (usage, _str(data.get("model")), _str(data.get("service_tier")))
                choices = data.get("choices")
                self._saw_final_usage_chunk = not choices
            return
        if usage is not None:
            self.settle(usage, _str(data.get("model")), _str(data.get("service_tier")))
        elif data.get("object") == "response" and data.get("status") in ("queued", "in_progress"):
            self.settle_worst_case("a background response reports its usage only when it completes")
        elif data.get("object") == "response" or "output" in data:
            self._collect_response_output(data)  # only needed to estimate a missing usage
        else:
            self._collect_text(data)

    def _observe_response_event(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind in _TERMINAL_RESPONSE_EVENTS:
            response = data.get("response")
            if isinstance(response, Mapping) and response.get("usage") is not None:
                self.settle(
                    response["usage"], _str(response.get("model")), _str(response.get("service_tier"))
                )
        elif kind.endswith(".delta"):
            delta = data.get("delta")
            if isinstance(delta, str):
                self._text.append(delta)

    def _collect_text(self, data: Mapping[str, Any]) -> None:
        choices = data.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, Mapping):
                continue
            if isinstance(choice.get("text"), str):
                self._text.append(choice["text"])
            for part in (choice.get("delta"), choice.get("message")):
                if not isinstance(part, Mapping):
                    continue
                if isinstance(part.get("content"), str):
                    self._text.append(part["content"])
                for call in part.get("tool_calls") or ():
                    function = call.get("function") if isinstance(call, Mapping) else None
                    if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
                        self._text.append(function["arguments"])

    def _collect_response_output(self, data: Mapping[str, Any]) -> None:
        for item in data.get("output") or ():
            if not isinstance(item, Mapping):
                continue
            if isinstance(item.get("arguments"), str):
                self._text.append(item["arguments"])
            for part in item.get("content") or ():
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    self._text.append(part["text"])

    def stream_ended(self, completed: bool) -> None:
        """The caller finished, broke out of, or abandoned a stream."""
        if self.finished:
            return
        last = self._last_stream_usage
        if last is not None and (completed or self._saw_final_usage_chunk):
            self.settle(*last)
        else:
            self.settle_estimated(
                "the stream ended before the server reported usage"
                if not completed
                else "the stream carried no usage"
            )

    def settle(self, raw_usage: Any, response_model: str | None, service_tier: str | None) -> None:
        """Replace every reservation with what the server reported."""
        try:
            counts = TokenCounts.from_openai(raw_usage)
        except UsageFormatError as exc:
            self.settle_estimated(f"the server's usage was unreadable ({exc})")
            return
        book = self.book
        # Price the model that answered (a dated snapshot may be priced apart); fall back to
        # the model asked for when the answering name is unknown.
        model = self.model
        if response_model and response_model != model and book.knows(response_model):
            model = response_model
        usage = Usage.of_request(counts, book.cost(counts, model, service_tier=service_tier))
        self._finish(usage, response_model or self.model, estimated=False)

    def settle_estimated(self, reason: str) -> None:
        """Charge a billed call whose usage we never saw: prompt estimate + output seen so far."""
        if self.finished:
            return
        try:
            prompt = self._estimate().tokens.prompt_tokens_upper
        except Exception:  # a body we cannot estimate: charge what was reserved, if anything
            prompt = self.reserved.tokens
        completion = count_text(self.model, "".join(self._text)) if self._text and self.model else 0
        self._finish_estimated(prompt, completion, f"from its estimate: {reason}")

    def settle_worst_case(self, reason: str) -> None:
        """Charge a billed call whose usage will never be seen at its reserved worst case."""
        if self.finished:
            return
        try:
            plan = self._estimate()
            prompt, completion = plan.tokens.prompt_tokens_upper, plan.reserved_output_tokens
        except Exception:
            prompt, completion = self.reserved.tokens, 0
        self._finish_estimated(prompt, completion, f"at its worst case: {reason}")

    def _finish_estimated(self, prompt: int, completion: int, how: str) -> None:
        usage = Usage(prompt_tokens=prompt, completion_tokens=completion, requests=1, estimated_requests=1)
        cost = self.book.cost(usage, self.model) if self.model else Decimal(0)
        # Books first: a warning turned into an error must not lose the spend.
        self._finish(usage.with_cost(cost), self.model, estimated=True)
        warnings.warn(
            f"budgetguard charged a {self.endpoint} call to {self.model!r} "
            f"({prompt} prompt + {completion} completion tokens) {how}",
            EstimatedUsageWarning,
            stacklevel=4,
        )

    def fail(self) -> None:
        """The request failed without being billed: drop every reservation."""
        with _finish_lock:
            if self.finished:
                return
            self.finished = True
        for budget in self.budgets:
            hold = self.holds.get(id(budget))
            if hold is not None:
                budget._release(hold)

    def _finish(self, usage: Usage, model: str, *, estimated: bool) -> None:
        with _finish_lock:
            if self.finished:
                return
            self.finished = True
        over = False
        actual = Amount.of_usage(usage) if self.budgets else _NOTHING
        for scope in self.scopes:
            if isinstance(scope, Budget):
                hold = self.holds.get(id(scope))
                if hold is not None and (
                    actual.picos > hold.amount.picos or actual.tokens > hold.amount.tokens
                ):
                    over = True
                # A ledger that keeps no records (the in-memory default) is not given one.
                record = self._record(scope, usage, model, estimated) if scope.ledger.keeps_records else None
                scope._settle(hold, actual, record)
            scope._add_usage(model, usage)
        # User callbacks run only once every scope's books are complete; the first error is
        # raised after all of them ran.
        error: BaseException | None = None
        for budget in self.budgets:
            try:
                budget._check_alerts()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
        if over:
            warnings.warn(
                f"the API billed more than budgetguard reserved for a {self.endpoint} call to {model!r}: "
                f"reserved ${self.reserved.usd} / {self.reserved.tokens} tokens, billed "
                f"${usage.cost_usd} / {usage.total_tokens} tokens; the ledger records what was billed",
                UnderReservedWarning,
                stacklevel=3,
            )

    def _record(self, budget: Budget, usage: Usage, model: str, estimated: bool) -> SpendRecord:
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
        )


def _is_async_client(client: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(server_counter(client))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _cap_field(endpoint: str, body: Mapping[str, Any]) -> str:
    if endpoint == "responses":
        return "max_output_tokens"
    if endpoint == "completions":
        return "max_tokens"
    # Chat: keep the field the caller used; otherwise the current one (o-series reject max_tokens).
    return (
        "max_tokens"
        if "max_tokens" in body and "max_completion_tokens" not in body
        else "max_completion_tokens"
    )


def _may_free_up(budget: Budget, refused: Refused, time_left: float) -> bool:
    """Whether waiting up to ``time_left`` seconds can make room: holds in flight may be
    released, rolling windows shed old spend, a calendar window may roll over in time."""
    if time_left <= 0:
        return False
    kind = refused.kind
    if refused.requested.get(kind) > refused.limit:
        return False  # it would not fit in an empty budget
    if refused.reserved.get(kind) > 0:
        return True
    window = budget.window
    if window is None:
        return False
    from budgetguard._windows import Rolling

    if isinstance(window, Rolling):
        return True
    now = budget.ledger.clock()
    _, end = window.span(now)
    return end - now <= time_left


def _why(policy: object, waited: float) -> str:
    if isinstance(policy, Wait):
        return f"waited {waited:.1f}s of max_wait {policy.max_wait}s"
    return ""
