"""The life of one metered call, from its reservation to its settlement, when streams, scopes,
threads, tasks and ledgers do not cooperate.

Acceptance specs for the call path: written against the public API only (``budgetguard``,
``budgetguard.testing`` and the ledger classes of ``budgetguard._ledger``), so they hold whatever
the modules behind it look like. The numbers a budget must hold are the ones the (simulated)
server billed: scripted with ``Reply(usage=...)`` or read back from the usage the server reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import budgetguard as bg
from budgetguard._ledger import Amount, Hold, Ledger, Limits, MemoryLedger, Refused, Snapshot, SpendRecord
from budgetguard.testing import Reply, Simulator

MESSAGES = [{"role": "user", "content": "Think it through, then answer briefly"}]
CHEAP_MODEL = "gpt-4o-mini"
REASONING_MODEL = "o4-mini"
ANSWER = "The answer is forty-two, and here is a short explanation of why that is so."
# What the server bills for the reasoning answer: most of the output is hidden reasoning.
REASONING_BILL = {
    "prompt_tokens": 20,
    "completion_tokens": 500,
    "completion_tokens_details": {"reasoning_tokens": 480},
}
# The same, with the prompt left for the server to count (for calls whose usage never arrives).
REASONING_OUTPUT_BILL = {"completion_tokens": 500, "completion_tokens_details": {"reasoning_tokens": 480}}
LONG_TEXT = "one two three four five six seven eight nine ten " * 40  # cut to 200 tokens by max_tokens
# A connection dropped mid-stream: openai 3.x wraps the transport error, 1.x and 2.x do not.
CUT_STREAM_ERRORS = (openai.APIConnectionError, httpx.TransportError)
SAFETY = 20.0  # seconds a worker may wait for another before the test gives up (never reached)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _small_call(client: Any) -> Any:
    return client.chat.completions.create(model=CHEAP_MODEL, messages=MESSAGES, max_tokens=8)


async def _small_call_async(aclient: Any) -> Any:
    return await aclient.chat.completions.create(model=CHEAP_MODEL, messages=MESSAGES, max_tokens=8)


def _reported(usage: Any) -> bg.Usage:
    """The usage of one chat completion as the server reported it (a ``CompletionUsage``)."""
    details = usage.completion_tokens_details
    return bg.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        reasoning_tokens=(details.reasoning_tokens or 0) if details is not None else 0,
        requests=1,
    )


def _priced(usages: list[bg.Usage], model: str) -> bg.Usage:
    """The total of calls as billed: tokens as reported, each call priced by the default book."""
    book = bg.PriceBook()
    return sum((u.with_cost(book.cost(u, model)) for u in usages), bg.Usage())


def _scripted(usage: dict[str, Any], model: str) -> bg.Usage:
    details = usage.get("completion_tokens_details") or {}
    return _priced(
        [
            bg.Usage(
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
                reasoning_tokens=details.get("reasoning_tokens", 0),
                requests=1,
            )
        ],
        model,
    )


@contextlib.contextmanager
def _recorded_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised inside, from any thread (the filters are process-wide)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _estimates(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, bg.EstimatedUsageWarning)]


def _run_in_threads(*targets: Callable[[], None]) -> None:
    """Run each target in its own thread; re-raise the first exception any of them raised."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY * 2)
    assert not any(thread.is_alive() for thread in threads), "a worker thread never finished"
    if errors:
        raise errors[0]


def _assert_books_match_the_bill(budget: bg.Budget, billed: bg.Usage) -> None:
    usage = budget.usage
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (
        billed.requests,
        billed.prompt_tokens,
        billed.completion_tokens,
    ), f"budget charged {usage!r}, the server billed {billed!r}"
    assert usage.estimated_requests == 0
    assert usage.cost_usd == billed.cost_usd
    assert budget.spent_usd == billed.cost_usd
    assert budget.reserved_usd == 0


def _write_config(tmp_path: Path) -> Path:
    path = tmp_path / "budgetguard.yaml"
    path.write_text(
        f"""version: 1
defaults:
  store: sqlite:///{tmp_path / "spend.db"}
budgets:
  daily:
    max_usd: 5
    window: 1d
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def _close_ledgers() -> Iterator[None]:
    yield
    from budgetguard._ledger import close_ledgers

    close_ledgers()


# ----------------------------------------------------------------------------------------------
# 1. One budget, two threads or tasks: a live stream is not settled by the other's scope exits
# ----------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("_close_ledgers")
def test_a_slow_stream_in_a_named_budget_is_charged_its_bill_while_another_thread_enters_and_leaves_it(
    tmp_path: Path, client: Any, sim: Simulator
) -> None:
    bg.configure(_write_config(tmp_path))
    daily = bg.Budget.named("daily")
    sim.script(Reply(content=LONG_TEXT))  # the first request sent is the reader's
    billed: list[bg.Usage] = []
    reader_started, churned, reader_done = threading.Event(), threading.Event(), threading.Event()

    def read_slowly() -> None:
        try:
            with daily:
                stream = client.chat.completions.create(
                    model=CHEAP_MODEL,
                    messages=MESSAGES,
                    max_tokens=200,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                reader_started.set()
                for i, chunk in enumerate(stream):
                    if chunk.usage is not None:
                        billed.append(_reported(chunk.usage))
                    if i == 1:  # mid-stream: the other thread has come and gone many times
                        assert churned.wait(SAFETY)
                    time.sleep(0.001)
        finally:
            reader_done.set()

    def enter_and_leave() -> None:
        assert reader_started.wait(SAFETY)
        rounds = 0
        while rounds < 10 or (not reader_done.is_set() and rounds < 500):
            with daily:
                if rounds % 2 == 0:
                    billed.append(_reported(_small_call(client).usage))
            rounds += 1
            if rounds == 10:
                churned.set()

    with _recorded_warnings() as caught:
        _run_in_threads(read_slowly, enter_and_leave)

    assert len(billed) == len(sim.requests)
    assert _estimates(caught) == []
    _assert_books_match_the_bill(daily, _priced(billed, CHEAP_MODEL))


@pytest.mark.usefixtures("_close_ledgers")
async def test_a_slow_stream_in_a_named_budget_is_charged_its_bill_while_another_task_enters_and_leaves_it(
    tmp_path: Path, aclient: Any, sim: Simulator
) -> None:
    bg.configure(_write_config(tmp_path))
    daily = bg.Budget.named("daily")
    sim.script(Reply(content=LONG_TEXT))
    billed: list[bg.Usage] = []
    reader_started, churned, reader_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def read_slowly() -> None:
        try:
            async with daily:
                stream = await aclient.chat.completions.create(
                    model=CHEAP_MODEL,
                    messages=MESSAGES,
                    max_tokens=200,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                reader_started.set()
                i = 0
                async for chunk in stream:
                    if chunk.usage is not None:
                        billed.append(_reported(chunk.usage))
                    if i == 1:
                        await asyncio.wait_for(churned.wait(), SAFETY)
                    i += 1
                    await asyncio.sleep(0.001)
        finally:
            reader_done.set()

    async def enter_and_leave() -> None:
        await asyncio.wait_for(reader_started.wait(), SAFETY)
        rounds = 0
        while rounds < 10 or (not reader_done.is_set() and rounds < 500):
            async with daily:
                if rounds % 2 == 0:
                    billed.append(_reported((await _small_call_async(aclient)).usage))
                else:
                    await asyncio.sleep(0)
            rounds += 1
            if rounds == 10:
                churned.set()

    with _recorded_warnings() as caught:
        await asyncio.gather(read_slowly(), enter_and_leave())

    assert len(billed) == len(sim.requests)
    assert _estimates(caught) == []
    _assert_books_match_the_bill(daily, _priced(billed, CHEAP_MODEL))


def test_a_slow_stream_in_a_shared_decorated_budget_is_charged_its_bill_while_other_invocations_come_and_go(
    client: Any, sim: Simulator
) -> None:
    agent = bg.Budget(max_usd=1, name="agent", shared=True)
    sim.script(Reply(content=LONG_TEXT))
    billed: list[bg.Usage] = []
    streamed: list[bg.Usage] = []
    reader_started, churned, reader_done = threading.Event(), threading.Event(), threading.Event()

    @agent
    def read_slowly() -> None:
        stream = client.chat.completions.create(
            model=CHEAP_MODEL,
            messages=MESSAGES,
            max_tokens=200,
            stream=True,
            stream_options={"include_usage": True},
        )
        reader_started.set()
        for i, chunk in enumerate(stream):
            if chunk.usage is not None:
                billed.append(_reported(chunk.usage))
                streamed.append(_reported(chunk.usage))
            if i == 1:
                assert churned.wait(SAFETY)
            time.sleep(0.001)

    @agent
    def small_step() -> None:
        billed.append(_reported(_small_call(client).usage))

    @agent
    def idle_step() -> None:
        pass

    def reader() -> None:
        try:
            read_slowly()
        finally:
            reader_done.set()

    def churner() -> None:
        assert reader_started.wait(SAFETY)
        rounds = 0
        while rounds < 10 or (not reader_done.is_set() and rounds < 500):
            small_step() if rounds % 2 == 0 else idle_step()
            rounds += 1
            if rounds == 10:
                churned.set()

    with _recorded_warnings() as caught:
        _run_in_threads(reader, churner)

    assert len(billed) == len(sim.requests)
    assert _estimates(caught) == []
    _assert_books_match_the_bill(agent, _priced(billed, CHEAP_MODEL))
    # Each function is credited with its own invocations' calls only, though they overlapped.
    assert bg.usage_of(read_slowly).completion_tokens == streamed[0].completion_tokens
    assert bg.usage_of(idle_step).requests == 0
    assert bg.usage_of(small_step).requests == len(sim.requests) - 1


# ----------------------------------------------------------------------------------------------
# 2. A stream whose content is over: closing it (or leaving its scope) charges the bill exactly
# ----------------------------------------------------------------------------------------------


def _chat_stream(client: Any) -> Any:
    return client.chat.completions.create(
        model=REASONING_MODEL, messages=MESSAGES, max_completion_tokens=1000, stream=True
    )


def _responses_stream(client: Any) -> Any:
    return client.responses.create(
        model=REASONING_MODEL, input=MESSAGES[0]["content"], max_output_tokens=1000, stream=True
    )


async def _chat_stream_async(aclient: Any) -> Any:
    return await aclient.chat.completions.create(
        model=REASONING_MODEL, messages=MESSAGES, max_completion_tokens=1000, stream=True
    )


async def _responses_stream_async(aclient: Any) -> Any:
    return await aclient.responses.create(
        model=REASONING_MODEL, input=MESSAGES[0]["content"], max_output_tokens=1000, stream=True
    )


STREAMS = {"chat": _chat_stream, "responses": _responses_stream}
ASYNC_STREAMS = {"chat": _chat_stream_async, "responses": _responses_stream_async}


def _content_is_over(event: Any) -> bool:
    """The chat chunk carrying ``finish_reason``, or the Responses ``output_text.done`` event."""
    if getattr(event, "type", None) == "response.output_text.done":
        return True
    choices = getattr(event, "choices", None)
    return bool(choices) and choices[0].finish_reason is not None


def _is_text_delta(event: Any) -> bool:
    if getattr(event, "type", None) == "response.output_text.delta":
        return True
    choices = getattr(event, "choices", None)
    return bool(choices) and bool(choices[0].delta.content)


def _assert_charged_the_reasoning_bill(budget: bg.Budget, caught: list[warnings.WarningMessage]) -> None:
    billed = _scripted(REASONING_BILL, REASONING_MODEL)
    _assert_books_match_the_bill(budget, billed)
    assert budget.usage.reasoning_tokens == 480
    assert _estimates(caught) == []


@pytest.mark.parametrize("api", sorted(STREAMS))
def test_a_stream_closed_right_after_its_content_ends_is_charged_exactly_what_the_server_billed(
    client: Any, sim: Simulator, api: str
) -> None:
    sim.script(Reply(content=ANSWER, usage=REASONING_BILL))
    with _recorded_warnings() as caught, bg.Budget(max_usd=1) as budget:
        stream = STREAMS[api](client)
        for event in stream:
            if _content_is_over(event):
                break
        stream.close()
    _assert_charged_the_reasoning_bill(budget, caught)


@pytest.mark.parametrize("api", sorted(ASYNC_STREAMS))
async def test_an_async_stream_closed_right_after_its_content_ends_is_charged_exactly_what_the_server_billed(
    aclient: Any, sim: Simulator, api: str
) -> None:
    sim.script(Reply(content=ANSWER, usage=REASONING_BILL))
    with _recorded_warnings() as caught:
        async with bg.Budget(max_usd=1) as budget:
            stream = await ASYNC_STREAMS[api](aclient)
            async for event in stream:
                if _content_is_over(event):
                    break
            await stream.close()
    _assert_charged_the_reasoning_bill(budget, caught)


@pytest.mark.parametrize("api", sorted(STREAMS))
def test_a_stream_left_unclosed_after_its_content_ends_is_charged_exactly_what_the_server_billed(
    client: Any, sim: Simulator, api: str
) -> None:
    sim.script(Reply(content=ANSWER, usage=REASONING_BILL))
    with _recorded_warnings() as caught, bg.Budget(max_usd=1) as budget:
        stream = STREAMS[api](client)
        for event in stream:
            if _content_is_over(event):
                break
        # no close(): the scope ends with the stream still open
    _assert_charged_the_reasoning_bill(budget, caught)
    del stream


# ----------------------------------------------------------------------------------------------
# 3. A stream that ends before its usage: charged at least the bill (hidden reasoning included)
# ----------------------------------------------------------------------------------------------


def _bill_for_the_same_request(client: Any, sim: Simulator, api: str) -> bg.Usage:
    """What the server bills for this request, learned from an identical call outside any scope."""
    sim.script(Reply(content=ANSWER, usage=REASONING_OUTPUT_BILL))
    if api == "chat":
        usage = client.chat.completions.create(
            model=REASONING_MODEL, messages=MESSAGES, max_completion_tokens=1000
        ).usage
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
    else:
        usage = client.responses.create(
            model=REASONING_MODEL, input=MESSAGES[0]["content"], max_output_tokens=1000
        ).usage
        prompt, completion = usage.input_tokens, usage.output_tokens
    assert completion == 500
    return _priced(
        [bg.Usage(prompt_tokens=prompt, completion_tokens=completion, requests=1)], REASONING_MODEL
    )


def _assert_charged_at_least(budget: bg.Budget, billed: bg.Usage) -> None:
    usage = budget.usage
    assert usage.requests == 1
    assert usage.completion_tokens >= billed.completion_tokens, (
        f"charged {usage.completion_tokens} completion tokens, the server billed "
        f"{billed.completion_tokens} (most of them hidden reasoning)"
    )
    assert usage.prompt_tokens >= billed.prompt_tokens
    assert usage.cost_usd >= billed.cost_usd
    assert budget.spent_usd == usage.cost_usd
    assert budget.reserved_usd == 0


@pytest.mark.parametrize("api", sorted(STREAMS))
def test_a_reasoning_stream_cut_before_its_usage_is_charged_at_least_what_the_server_billed(
    client: Any, sim: Simulator, api: str
) -> None:
    billed = _bill_for_the_same_request(client, sim, api)
    sim.script(Reply(content=ANSWER, usage=REASONING_OUTPUT_BILL, cut_stream_after=3))
    with pytest.warns(bg.EstimatedUsageWarning), bg.Budget(max_usd=1) as budget:
        with pytest.raises(CUT_STREAM_ERRORS):
            for _ in STREAMS[api](client):
                pass
    _assert_charged_at_least(budget, billed)
    assert budget.usage.estimated_requests == 1


async def test_an_async_reasoning_stream_cut_before_its_usage_is_charged_at_least_what_the_server_billed(
    client: Any, aclient: Any, sim: Simulator
) -> None:
    billed = _bill_for_the_same_request(client, sim, "chat")
    sim.script(Reply(content=ANSWER, usage=REASONING_OUTPUT_BILL, cut_stream_after=3))
    with pytest.warns(bg.EstimatedUsageWarning):
        async with bg.Budget(max_usd=1) as budget:
            with pytest.raises(CUT_STREAM_ERRORS):
                async for _ in await _chat_stream_async(aclient):
                    pass
    _assert_charged_at_least(budget, billed)
    assert budget.usage.estimated_requests == 1


@pytest.mark.parametrize("api", sorted(STREAMS))
def test_a_reasoning_stream_broken_off_midway_and_closed_is_charged_at_least_what_the_server_billed(
    client: Any, sim: Simulator, api: str
) -> None:
    billed = _bill_for_the_same_request(client, sim, api)
    sim.script(Reply(content=ANSWER, usage=REASONING_OUTPUT_BILL))
    with _recorded_warnings() as caught, bg.Budget(max_usd=1) as budget:
        stream = STREAMS[api](client)
        deltas = 0
        for event in stream:
            deltas += _is_text_delta(event)
            if deltas == 3:
                break
        stream.close()
    _assert_charged_at_least(budget, billed)
    # Either the usage was still read (then it is exact) or the charge is an estimate, said loudly.
    assert budget.usage.estimated_requests == len(_estimates(caught)) <= 1


# ----------------------------------------------------------------------------------------------
# 4. A ledger that fails: no hold is left behind, healthy budgets keep exact books
# ----------------------------------------------------------------------------------------------


class FlakyLedger(Ledger):
    """A memory ledger whose store "goes away" at ``reserve`` or at ``settle``.

    Fail-closed it raises ``error``; fail-open (like the Redis ledger's ``fail_open``) it warns
    with ``BudgetGuardWarning`` instead: a reservation is granted without checking the cap, a
    settle is not recorded.
    """

    def __init__(
        self,
        *,
        fail_at: str,
        error: Callable[[str], BaseException] = bg.StoreError,
        fail_open: bool = False,
    ) -> None:
        self.inner = MemoryLedger()
        self.clock = self.inner.clock
        self.keeps_records = False
        self.fail_at = fail_at
        self.error = error
        self.fail_open = fail_open
        self.faults = 0

    def _fails(self, operation: str) -> bool:
        if operation != self.fail_at:
            return False
        self.faults += 1
        message = f"test store unreachable at {operation}"
        if not self.fail_open:
            raise self.error(message)
        warnings.warn(f"{message}: failing open", bg.BudgetGuardWarning, stacklevel=2)
        return True

    def reserve(
        self, budget: str, amount: Amount, limits: Limits, window: Any, *, ttl: float = 600.0
    ) -> Hold | Refused:
        if self._fails("reserve"):
            return self.inner.reserve(budget, amount, Limits(), window, ttl=ttl)
        return self.inner.reserve(budget, amount, limits, window, ttl=ttl)

    def settle(self, hold: Hold, actual: Amount, record: SpendRecord | None = None) -> None:
        if self._fails("settle"):
            self.inner.release(hold)
            return
        self.inner.settle(hold, actual, record)

    def release(self, hold: Hold) -> None:
        self.inner.release(hold)

    def snapshot(self, budget: str, window: Any) -> Snapshot:
        return self.inner.snapshot(budget, window)


LAYOUTS = ["failing-store-outside", "failing-store-inside"]
FAULTS = {"StoreError": bg.StoreError, "KeyboardInterrupt": KeyboardInterrupt}
SMALL_BILL = {"prompt_tokens": 11, "completion_tokens": 7}


@contextlib.contextmanager
def _budgets(store: Ledger, layout: str) -> Iterator[tuple[bg.UsageTracker, bg.Budget, bg.Budget]]:
    """A tracker around a budget on the flaky store and a healthy in-memory one, in either nesting."""
    failing = bg.Budget(max_usd=1, name="on-flaky-store", store=store)
    healthy = bg.Budget(max_usd=1, name="in-memory")
    outer, inner = (failing, healthy) if layout == "failing-store-outside" else (healthy, failing)
    with bg.track_usage(name="tracker") as tracker, outer, inner:
        yield tracker, failing, healthy


@contextlib.contextmanager
def _interrupt_stays_where_raised() -> Iterator[None]:
    """A KeyboardInterrupt that escapes the checks below must fail this test, not end the run."""
    try:
        yield
    except KeyboardInterrupt as exc:
        pytest.fail(f"a KeyboardInterrupt escaped from somewhere other than the call: {exc!r}")


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_store_failing_at_reserve_sends_nothing_leaves_no_hold_and_raises_once(
    client: Any, sim: Simulator, layout: str, fault: str
) -> None:
    error = FAULTS[fault]
    store = FlakyLedger(fail_at="reserve", error=error)
    with _interrupt_stays_where_raised(), _budgets(store, layout) as (tracker, failing, healthy):
        with pytest.raises(error) as raised:
            _small_call(client)
    assert type(raised.value) is error
    assert "test store unreachable at reserve" in str(raised.value)
    assert store.faults == 1
    assert sim.requests == []
    assert healthy.reserved_usd == 0
    assert failing.reserved_usd == 0
    assert healthy.spent_usd == 0
    assert healthy.usage.requests == tracker.usage.requests == 0


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_store_failing_at_settle_leaves_every_healthy_scope_charged_once_and_no_hold(
    client: Any, sim: Simulator, layout: str, fault: str
) -> None:
    error = FAULTS[fault]
    sim.script(Reply(content="hi", usage=SMALL_BILL))
    store = FlakyLedger(fail_at="settle", error=error)
    with _interrupt_stays_where_raised(), _budgets(store, layout) as (tracker, _, healthy):
        with pytest.raises(error) as raised:
            _small_call(client)
    assert type(raised.value) is error
    assert "test store unreachable at settle" in str(raised.value)
    assert store.faults == 1
    assert len(sim.requests) == 1
    _assert_books_match_the_bill(healthy, _scripted(SMALL_BILL, CHEAP_MODEL))
    assert tracker.usage.requests == 1


@pytest.mark.parametrize("fail_at", ["reserve", "settle"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_store_failing_open_lets_the_call_through_and_healthy_budgets_charge_it(
    client: Any, sim: Simulator, layout: str, fail_at: str
) -> None:
    sim.script(Reply(content="hi", usage=SMALL_BILL))
    store = FlakyLedger(fail_at=fail_at, fail_open=True)
    with (
        pytest.warns(bg.BudgetGuardWarning, match="failing open"),
        _budgets(store, layout) as (tracker, failing, healthy),
    ):
        reply = _small_call(client)
    assert reply.choices[0].message.content == "hi"
    assert store.faults == 1
    _assert_books_match_the_bill(healthy, _scripted(SMALL_BILL, CHEAP_MODEL))
    assert tracker.usage.requests == 1
    assert failing.reserved_usd == 0


# ----------------------------------------------------------------------------------------------
# 5. Many threads, constant preemption: scope exits never fail, every call is counted once
# ----------------------------------------------------------------------------------------------


def test_eight_threads_sharing_a_budget_under_constant_preemption_count_every_call_exactly_once(
    client: Any, sim: Simulator
) -> None:
    shared = bg.Budget(max_usd=10, name="shared")
    workers, rounds = 8, 24
    calls = [0] * workers  # every call a worker made (all inside its own tracker)
    trackers: list[bg.UsageTracker | None] = [None] * workers
    errors: list[str] = []

    def stream(n: int) -> Any:
        return client.chat.completions.create(model=CHEAP_MODEL, messages=MESSAGES, max_tokens=8, stream=True)

    def work(n: int) -> None:
        try:
            with contextlib.ExitStack() as stack, bg.track_usage(name=f"worker-{n}") as mine:
                trackers[n] = mine
                held = stream(n)  # opened now, read only at the end: open while everything else runs
                calls[n] += 1
                stack.callback(held.close)  # a worker that fails leaves nothing to settle later
                for i in range(rounds):
                    own = bg.Budget(max_usd=1, name=f"step-{n}-{i}")
                    outer, inner = (shared, own) if i % 2 else (own, shared)
                    with outer, inner:
                        kind = (n + i) % 4
                        if kind == 0:
                            _small_call(client)
                        elif kind == 1:
                            for _ in stream(n):
                                pass
                        else:
                            broken = stream(n)
                            for _ in broken:
                                break  # broken out of: closed, or left to the end of its scope
                            if kind == 3:
                                broken.close()
                        calls[n] += 1
                    for _ in range(3):
                        with shared:  # in and out without a call
                            pass
                    assert own.usage.requests == 1, f"step {i}: books incomplete when its scope ended"
                for _ in held:
                    pass
        except BaseException as exc:
            errors.append(f"worker {n}: {type(exc).__name__}: {exc}")

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bg.EstimatedUsageWarning)  # the broken-off streams
            threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(SAFETY * 3)
    finally:
        sys.setswitchinterval(previous)

    assert not any(thread.is_alive() for thread in threads), "a worker never finished"
    assert errors == []
    assert calls == [rounds + 1] * workers
    assert len(sim.requests) == sum(calls)
    assert [t.usage.requests if t else None for t in trackers] == calls
    assert shared.usage.requests == shared.snapshot().spent.requests == workers * rounds
    assert shared.reserved_usd == 0


# ----------------------------------------------------------------------------------------------
# 6. A raw streaming response read by the caller, in a helper whose response object dies early
# ----------------------------------------------------------------------------------------------


def _ask_as_json(client: Any) -> dict[str, Any]:
    with client.chat.completions.with_streaming_response.create(
        model=CHEAP_MODEL, messages=MESSAGES, max_tokens=400
    ) as response:
        data: dict[str, Any] = response.json()
    return data  # the response object is gone; the scope is still open


def _ask_line_by_line(client: Any) -> list[str]:
    with client.chat.completions.with_streaming_response.create(
        model=CHEAP_MODEL,
        messages=MESSAGES,
        max_tokens=400,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        return [line for line in response.iter_lines() if line]


RAW_BILL = {"prompt_tokens": 9, "completion_tokens": 300}


def test_a_streaming_response_read_as_json_in_a_helper_is_charged_its_reported_usage(
    client: Any, sim: Simulator
) -> None:
    sim.script(Reply(content="hi", usage=RAW_BILL))
    with _recorded_warnings() as caught, bg.Budget(max_usd=1) as budget:
        data = _ask_as_json(client)
    assert data["usage"]["completion_tokens"] == 300
    _assert_books_match_the_bill(budget, _scripted(RAW_BILL, CHEAP_MODEL))
    assert _estimates(caught) == []


def test_a_streaming_response_read_line_by_line_in_a_helper_is_charged_its_reported_usage(
    client: Any, sim: Simulator
) -> None:
    sim.script(Reply(content="hi", usage=RAW_BILL))
    with _recorded_warnings() as caught, bg.Budget(max_usd=1) as budget:
        lines = _ask_line_by_line(client)
    events = [json.loads(line[len("data:") :]) for line in lines if line.startswith("data: {")]
    reported = [event["usage"] for event in events if event.get("usage")]
    assert [(u["prompt_tokens"], u["completion_tokens"]) for u in reported] == [(9, 300)]
    _assert_books_match_the_bill(budget, _scripted(RAW_BILL, CHEAP_MODEL))
    assert _estimates(caught) == []


async def test_an_async_streaming_response_read_as_json_in_a_helper_is_charged_its_reported_usage(
    aclient: Any, sim: Simulator
) -> None:
    async def ask() -> dict[str, Any]:
        async with aclient.chat.completions.with_streaming_response.create(
            model=CHEAP_MODEL, messages=MESSAGES, max_tokens=400
        ) as response:
            data: dict[str, Any] = await response.json()
        return data

    sim.script(Reply(content="hi", usage=RAW_BILL))
    with _recorded_warnings() as caught:
        async with bg.Budget(max_usd=1) as budget:
            data = await ask()
    assert data["usage"]["completion_tokens"] == 300
    _assert_books_match_the_bill(budget, _scripted(RAW_BILL, CHEAP_MODEL))
    assert _estimates(caught) == []
