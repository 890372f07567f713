"""Observability: OpenTelemetry metrics and spans under the GenAI semantic conventions, and the
``budgetguard`` logger's records, checked against what the server billed.

The OpenTelemetry SDK's in-memory span exporter and metric reader stand in for a backend; the
providers are passed to ``enable_telemetry`` (the global ones are set once per process, so the
test of the YAML switch runs in a child process).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is a test dependency (dev extra)")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import budgetguard as bg
from budgetguard import _events, _telemetry
from budgetguard.testing import Reply, Simulator

MESSAGES = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parents[1]


class Otel:
    """In-memory OpenTelemetry: what budgetguard (and any instrumentation) reported."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("the-application")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def call_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if (s.attributes or {}).get("gen_ai.operation.name")]

    def metrics(self, scope: str = "budgetguard") -> dict[str, Any]:
        """Metric name -> the metric, as the reader collected it from one instrumentation scope."""
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        for resource in data.resource_metrics if data is not None else ():
            for scope_metrics in resource.scope_metrics:
                if scope_metrics.scope.name == scope:
                    found.update({metric.name: metric for metric in scope_metrics.metrics})
        return found


def points(metric: Any) -> dict[tuple[tuple[str, Any], ...], Any]:
    """A metric's data points by their attributes (sorted (key, value) pairs)."""
    return {tuple(sorted(dict(p.attributes).items())): p for p in metric.data.data_points}


def attrs(**pairs: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((key.replace("__", "."), value) for key, value in pairs.items()))


@pytest.fixture
def otel() -> Iterator[Otel]:
    state = Otel()
    bg.enable_telemetry(meter_provider=state.meter_provider, tracer_provider=state.tracer_provider)
    try:
        yield state
    finally:
        bg.disable_telemetry()
        state.tracer_provider.shutdown()
        state.meter_provider.shutdown()


@pytest.fixture
def settled() -> Iterator[list[_events.Event]]:
    seen: list[_events.Event] = []
    _events.subscribe(seen.append)
    yield seen
    _events.unsubscribe(seen.append)


@pytest.fixture
def openai_v2(otel: Otel) -> Iterator[None]:
    """The OpenTelemetry project's own OpenAI instrumentation, making the GenAI spans."""
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.openai_v2")
    instrumentor = instrumentation.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def _chat(client: Any, **extra: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10, **extra)


GENAI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini",
}


# --- switching it on ---------------------------------------------------------------------------


def test_importing_budgetguard_imports_no_opentelemetry_until_telemetry_is_enabled(tmp_path: Path) -> None:
    config = tmp_path / "budgetguard.yaml"
    config.write_text("version: 1\nbudgets:\n  run:\n    max_usd: 1\n")
    script = textwrap.dedent(
        f"""
        import sys
        import budgetguard as bg
        bg.configure({str(config)!r})
        with bg.Budget(max_usd=1), bg.track_usage():
            pass
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
        assert not loaded, loaded
        bg.enable_telemetry()
        assert "opentelemetry.trace" in sys.modules
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_telemetry_otel_true_in_the_configuration_reports_to_the_global_providers(tmp_path: Path) -> None:
    config = tmp_path / "budgetguard.yaml"
    config.write_text("version: 1\ntelemetry:\n  otel: true\n")
    script = textwrap.dedent(
        f"""
        from openai import OpenAI
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        import budgetguard as bg
        from budgetguard.testing import Reply, Simulator

        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        bg.configure({str(config)!r})
        with Simulator() as sim, OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client:
            sim.script(Reply(content="hi", usage={{"prompt_tokens": 12, "completion_tokens": 4}}))
            with bg.track_usage():
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}], max_tokens=10
                )
        (span,) = exporter.get_finished_spans()
        usage = span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]
        print(span.name, *usage)
        names = sorted(m.name for r in reader.get_metrics_data().resource_metrics
                       for s in r.scope_metrics for m in s.metrics)
        print(" ".join(names))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "chat gpt-4o-mini 12 4",
        "budgetguard.cost gen_ai.client.operation.duration gen_ai.client.token.usage",
    ]


def test_telemetry_otel_false_in_the_configuration_switches_it_off(tmp_path: Path) -> None:
    on, off = tmp_path / "on.yaml", tmp_path / "off.yaml"
    on.write_text("version: 1\ntelemetry:\n  otel: true\n")
    off.write_text("version: 1\ntelemetry:\n  otel: false\n")
    try:
        bg.configure(on)
        assert _telemetry.telemetry_enabled()
        bg.configure(tmp_path / "on.yaml")  # again: still one listener
        bg.configure(off)
        assert not _telemetry.telemetry_enabled()
    finally:
        bg.disable_telemetry()


def test_the_telemetry_section_is_checked_like_every_other(tmp_path: Path) -> None:
    from budgetguard._config import parse_config

    with pytest.raises(bg.ConfigError, match=r"at 'telemetry.otel': must be true or false"):
        parse_config("version: 1\ntelemetry:\n  otel: 'yes'\n")
    with pytest.raises(bg.ConfigError, match=r"unknown key 'otle' \(did you mean 'otel'\?\)"):
        parse_config("version: 1\ntelemetry:\n  otle: true\n")
    assert parse_config("version: 1\n").telemetry.otel is None


def test_disable_telemetry_stops_reporting(client: Any, sim: Simulator, otel: Otel) -> None:
    bg.disable_telemetry()
    with bg.track_usage():
        _chat(client)
    assert otel.spans() == [] and otel.metrics() == {}


# --- spans -------------------------------------------------------------------------------------


def test_a_call_without_a_genai_span_gets_one_child_span_with_the_billed_usage(
    client: Any, sim: Simulator, otel: Otel, settled: list[_events.Event]
) -> None:
    sim.script(
        Reply(
            content="hi",
            usage={
                "prompt_tokens": 12,
                "completion_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
        )
    )
    with otel.tracer.start_as_current_span("handle-request") as parent:
        with bg.Budget(max_usd=1, name="outer"), bg.Budget(max_usd=1, name="inner") as inner:
            _chat(client)
    (event,) = settled
    assert isinstance(event, _events.CallSettled)
    (span,) = otel.call_spans()
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes or {}) == {
        **GENAI,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.usage.cache_read.input_tokens": 8,
        "budgetguard.endpoint": "chat.completions",
        "budgetguard.cost_usd": float(inner.usage.cost_usd),
        "budgetguard.estimated": False,
        "budgetguard.budgets": ("inner", "outer"),
        "budgetguard.scope_path": "outer/inner",
        "budgetguard.reserved_usd": float(event.reserved_usd),
        "budgetguard.reserved_tokens": event.reserved_tokens,
        "budgetguard.under_reserved": False,
    }
    assert inner.usage.cost_usd > 0 and event.reserved_usd >= inner.usage.cost_usd
    # Made when the call settled, it starts when the call started.
    assert span.start_time is not None and span.end_time is not None
    assert abs((span.end_time - span.start_time) - event.duration * 1e9) < 1_000


async def test_an_async_call_gets_its_span_under_the_task_s_active_span(
    aclient: Any, sim: Simulator, otel: Otel
) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 7, "completion_tokens": 3}))
    with otel.tracer.start_as_current_span("agent-step") as parent:
        async with bg.track_usage():
            await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    (span,) = otel.call_spans()
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert (span.attributes or {})["gen_ai.usage.input_tokens"] == 7
    assert (span.attributes or {})["budgetguard.budgets"] == ()
    assert "budgetguard.reserved_usd" not in (span.attributes or {})  # nothing was reserved


ENDPOINTS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "chat.completions": ("chat", lambda c: _chat(c)),
    "responses": (
        "chat",
        lambda c: c.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=16),
    ),
    "completions": (
        "text_completion",
        lambda c: c.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", max_tokens=5),
    ),
    "embeddings": ("embeddings", lambda c: c.embeddings.create(model="text-embedding-3-small", input="hi")),
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_every_endpoint_reports_its_genai_operation_and_its_billed_tokens(
    client: Any, otel: Otel, endpoint: str
) -> None:
    operation, call = ENDPOINTS[endpoint]
    with bg.Budget(max_usd=1) as budget:
        call(client)
    (span,) = otel.call_spans()
    attributes = dict(span.attributes or {})
    model = attributes["gen_ai.request.model"]
    assert span.name == f"{operation} {model}"
    assert attributes["gen_ai.operation.name"] == operation
    assert attributes["budgetguard.endpoint"] == endpoint
    assert attributes["gen_ai.usage.input_tokens"] == budget.usage.prompt_tokens > 0
    assert attributes["gen_ai.usage.output_tokens"] == budget.usage.completion_tokens
    tokens = points(otel.metrics()["gen_ai.client.token.usage"])
    types = sorted(dict(key)["gen_ai.token.type"] for key in tokens)
    assert types == (["input"] if endpoint == "embeddings" else ["input", "output"])


def test_a_stream_is_reported_with_the_usage_budgetguard_asked_for(client: Any, otel: Otel) -> None:
    with bg.track_usage() as tracked:
        for _ in _chat(client, stream=True):
            pass
    (span,) = otel.call_spans()
    assert (span.attributes or {})["gen_ai.usage.output_tokens"] == tracked.usage.completion_tokens > 0
    assert (span.attributes or {})["budgetguard.estimated"] is False


def test_a_call_charged_from_an_estimate_says_so(client: Any, sim: Simulator, otel: Otel) -> None:
    import httpx
    import openai

    sim.script(Reply(content="one two three four five six", cut_stream_after=2))
    with pytest.warns(bg.EstimatedUsageWarning), bg.Budget(max_usd=1) as budget:
        with pytest.raises((openai.APIConnectionError, httpx.TransportError)):
            for _ in _chat(client, stream=True):
                pass
    (span,) = otel.call_spans()
    assert (span.attributes or {})["budgetguard.estimated"] is True
    assert (span.attributes or {})["gen_ai.usage.input_tokens"] == budget.usage.prompt_tokens
    (cost,) = points(otel.metrics()["budgetguard.cost"]).values()
    assert dict(cost.attributes)["budgetguard.estimated"] is True
    assert cost.value == pytest.approx(float(budget.usage.cost_usd))


def test_an_under_reserved_call_is_marked(client: Any, sim: Simulator, otel: Otel) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 50_000, "completion_tokens": 10}))
    with bg.Budget(max_usd=1), pytest.warns(bg.UnderReservedWarning):
        _chat(client)
    (span,) = otel.call_spans()
    assert (span.attributes or {})["budgetguard.under_reserved"] is True
    assert (span.attributes or {})["gen_ai.usage.input_tokens"] == 50_000


def test_a_model_without_a_price_has_tokens_and_no_cost(client: Any, otel: Otel) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bg.UnknownModelWarning)
        with bg.track_usage() as tracked:
            client.chat.completions.create(model="my-local-llama", messages=MESSAGES, max_tokens=10)
    assert tracked.usage.unpriced_requests == 1
    (span,) = otel.call_spans()
    attributes = dict(span.attributes or {})
    assert attributes["budgetguard.unpriced"] is True and "budgetguard.cost_usd" not in attributes
    assert attributes["gen_ai.usage.input_tokens"] == tracked.usage.prompt_tokens
    assert "budgetguard.cost" not in otel.metrics()  # an unknown cost is not a cost of 0


def test_a_refusal_is_a_span_event_on_an_error_span(client: Any, otel: Otel) -> None:
    with otel.tracer.start_as_current_span("handle-request") as parent:
        with bg.Budget(max_usd="0.0000001", name="tiny"), pytest.raises(bg.BudgetExceeded) as refused:
            _chat(client)
    (span,) = otel.call_spans()
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.name == "chat gpt-4o-mini" and span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "BudgetExceeded"
    (event,) = span.events
    assert event.name == "budgetguard.refused"
    assert dict(event.attributes or {}) == {
        "budgetguard.budget": "tiny",
        "budgetguard.limit_kind": "usd",
        "budgetguard.limit": float(refused.value.limit),
        "budgetguard.spent": 0.0,
        "budgetguard.reserved": 0.0,
        "budgetguard.requested": float(refused.value.requested),
    }
    assert otel.metrics() == {}  # nothing was sent, nothing was spent


def test_a_keyed_refusal_names_its_key(client: Any, otel: Otel) -> None:
    with bg.Budget(max_tokens=5, name="per-user", key="alice"), pytest.raises(bg.BudgetExceeded):
        _chat(client)
    (span,) = otel.call_spans()
    attributes = dict(span.events[0].attributes or {})
    assert attributes["budgetguard.key"] == "alice" and attributes["budgetguard.limit_kind"] == "tokens"
    assert attributes["budgetguard.limit"] == 5


# --- metrics -----------------------------------------------------------------------------------


def test_the_genai_metrics_and_the_cost_counter_add_up_to_the_billed_usage(
    client: Any, sim: Simulator, otel: Otel
) -> None:
    sim.script(
        Reply(content="a", usage={"prompt_tokens": 12, "completion_tokens": 4}),
        Reply(content="b", usage={"prompt_tokens": 30, "completion_tokens": 9}),
    )
    with bg.track_usage() as tracked:
        _chat(client)
        _chat(client)
    metrics = otel.metrics()
    assert set(metrics) == {
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "budgetguard.cost",
    }

    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    by_type = points(tokens)
    genai = {key.replace(".", "__"): value for key, value in GENAI.items()}
    input_point = by_type[attrs(**genai, gen_ai__token__type="input")]
    output_point = by_type[attrs(**genai, gen_ai__token__type="output")]
    assert (input_point.count, input_point.sum) == (2, 42) == (2, tracked.usage.prompt_tokens)
    assert (output_point.count, output_point.sum) == (2, 13) == (2, tracked.usage.completion_tokens)
    assert list(input_point.explicit_bounds) == list(_telemetry.TOKEN_BUCKETS)

    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    (duration_point,) = points(duration).values()
    assert dict(duration_point.attributes) == GENAI and duration_point.count == 2
    assert list(duration_point.explicit_bounds) == list(_telemetry.DURATION_BUCKETS)

    cost = metrics["budgetguard.cost"]
    assert cost.unit == "USD" and cost.data.is_monotonic
    (cost_point,) = points(cost).values()
    assert dict(cost_point.attributes) == {**GENAI, "budgetguard.estimated": False}
    assert cost_point.value == pytest.approx(float(tracked.usage.cost_usd), rel=1e-12)
    assert tracked.usage.cost_usd > 0


def test_the_response_model_is_the_model_that_answered(client: Any, sim: Simulator, otel: Otel) -> None:
    sim.script(Reply(content="hi", model="gpt-4o-mini-2024-07-18"))
    with bg.track_usage():
        _chat(client)
    (span,) = otel.call_spans()
    assert (span.attributes or {})["gen_ai.request.model"] == "gpt-4o-mini"
    assert (span.attributes or {})["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    keys = [dict(key) for key in points(otel.metrics()["gen_ai.client.token.usage"])]
    assert {key["gen_ai.response.model"] for key in keys} == {"gpt-4o-mini-2024-07-18"}


# --- another instrumentation's GenAI span --------------------------------------------------------


def test_the_genai_span_of_another_instrumentation_is_added_to_not_doubled(
    client: Any, sim: Simulator, otel: Otel, openai_v2: None
) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 12, "completion_tokens": 4}))
    with bg.Budget(max_usd=1, name="run") as run:
        _chat(client)
    (span,) = otel.call_spans()
    attributes = dict(span.attributes or {})
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.openai_v2"
    assert attributes["gen_ai.usage.input_tokens"] == 12 and attributes["gen_ai.usage.output_tokens"] == 4
    assert attributes["budgetguard.cost_usd"] == float(run.usage.cost_usd)
    assert attributes["budgetguard.budgets"] == ("run",)
    # The instrumentation records the GenAI metrics; budgetguard adds only the cost.
    assert "gen_ai.client.token.usage" in otel.metrics("opentelemetry.instrumentation.openai_v2")
    assert set(otel.metrics()) == {"budgetguard.cost"}


def test_a_refusal_under_another_instrumentation_is_an_event_on_its_span(
    client: Any, otel: Otel, openai_v2: None
) -> None:
    with bg.Budget(max_usd="0.0000001", name="tiny"), pytest.raises(bg.BudgetExceeded):
        _chat(client)
    (span,) = otel.call_spans()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.openai_v2"
    assert [event.name for event in span.events if event.name.startswith("budgetguard")] == [
        "budgetguard.refused"
    ]
    assert span.status.status_code is StatusCode.ERROR


def test_a_stream_under_another_instrumentation_is_one_span_too(
    client: Any, otel: Otel, openai_v2: None
) -> None:
    with bg.track_usage():
        for _ in _chat(client, stream=True):
            pass
    assert len(otel.call_spans()) == 1


def test_a_genai_span_is_given_to_one_call_only(client: Any, otel: Otel) -> None:
    # A span of the application's that looks like a chat span and covers two calls.
    with otel.tracer.start_as_current_span("chat gpt-4o-mini", attributes={"gen_ai.operation.name": "chat"}):
        with bg.track_usage():
            _chat(client)
            _chat(client)
    spans = otel.call_spans()
    assert len(spans) == 2  # the application's, given the first call, and one made for the second
    assert all("budgetguard.cost_usd" in (s.attributes or {}) for s in spans)


def test_an_agent_span_is_a_parent_not_a_call_span(client: Any, otel: Otel) -> None:
    attributes = {"gen_ai.operation.name": "invoke_agent"}
    with otel.tracer.start_as_current_span("invoke_agent helper", attributes=attributes) as agent:
        with bg.track_usage():
            _chat(client)
    (agent_span,) = [s for s in otel.spans() if s.name == "invoke_agent helper"]
    assert "gen_ai.usage.input_tokens" not in (agent_span.attributes or {})
    (call,) = [s for s in otel.spans() if s.name == "chat gpt-4o-mini"]
    assert call.parent is not None and call.parent.span_id == agent.get_span_context().span_id


# --- logging -----------------------------------------------------------------------------------


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "budgetguard"]


def test_a_settled_call_is_one_debug_record_with_every_number_as_an_extra_field(
    client: Any, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 12, "completion_tokens": 4}))
    with caplog.at_level(logging.DEBUG, logger="budgetguard"), bg.Budget(max_usd=1, name="run") as run:
        _chat(client)
    (record,) = _records(caplog)
    assert record.levelno == logging.DEBUG
    message = record.getMessage()
    for part in ("chat.completions", "gpt-4o-mini", "12 prompt + 4 completion tokens", "billed", "run"):
        assert part in message
    assert f"${run.usage.cost_usd}" in message
    fields = record.budgetguard  # type: ignore[attr-defined]
    assert fields["event"] == "CallSettled"
    assert (fields["endpoint"], fields["request_model"], fields["budgets"]) == (
        "chat.completions",
        "gpt-4o-mini",
        ("run",),
    )
    assert (fields["prompt_tokens"], fields["completion_tokens"]) == (12, 4)
    assert Decimal(fields["cost_usd"]) == run.usage.cost_usd
    assert fields["estimated"] is False and fields["under_reserved"] is False
    assert Decimal(fields["reserved_usd"]) >= run.usage.cost_usd and fields["reserved_tokens"] > 0


def test_an_estimated_call_says_estimated(
    client: Any, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.script(Reply(content="hi", omit_usage=True))
    with caplog.at_level(logging.DEBUG, logger="budgetguard"), bg.track_usage():
        with pytest.warns(bg.EstimatedUsageWarning):
            _chat(client)
    (record,) = _records(caplog)
    assert "(estimated)" in record.getMessage()
    assert record.budgetguard["estimated"] is True  # type: ignore[attr-defined]


def test_an_under_reservation_is_a_warning_record(
    client: Any, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 50_000, "completion_tokens": 10}))
    with caplog.at_level(logging.WARNING, logger="budgetguard"), bg.Budget(max_usd=1):
        with pytest.warns(bg.UnderReservedWarning):
            _chat(client)
    (record,) = _records(caplog)
    assert record.levelno == logging.WARNING and "billed more" in record.getMessage()
    assert record.budgetguard["under_reserved"] is True  # type: ignore[attr-defined]
    assert record.budgetguard["prompt_tokens"] == 50_000  # type: ignore[attr-defined]


def test_a_refusal_is_a_warning_record_with_its_numbers(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="budgetguard"), bg.Budget(max_tokens=5, name="tiny", key="k1"):
        with pytest.raises(bg.BudgetExceeded):
            _chat(client)
    (record,) = _records(caplog)
    assert record.levelno == logging.WARNING
    fields = record.budgetguard  # type: ignore[attr-defined]
    assert fields["event"] == "CallRefused"
    assert (fields["budget"], fields["key"], fields["limit_kind"], fields["limit"]) == (
        "tiny",
        "k1",
        "tokens",
        5,
    )
    assert fields["requested"] > 5 and fields["spent"] == 0


def test_nothing_is_logged_below_warning_by_default(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="budgetguard"), bg.track_usage():
        _chat(client)
    assert _records(caplog) == []
