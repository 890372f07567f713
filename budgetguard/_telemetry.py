"""OpenTelemetry: GenAI metrics and spans for every settled call, and an event for every refusal.

Switched on by :func:`enable_telemetry` (or ``telemetry: {otel: true}`` in the configuration
``configure()`` loads); ``opentelemetry-api`` is imported only then (``pip install
'budgetguard-sdk[otel]'``). It listens to the call path's events (``budgetguard._events``), in
the thread that settles each call, and follows the GenAI semantic conventions:

- metrics: ``gen_ai.client.token.usage`` (histogram, ``{token}``, one measurement per
  ``gen_ai.token.type``: ``input`` and, except for embeddings, ``output``) and
  ``gen_ai.client.operation.duration`` (histogram, ``s``), with ``gen_ai.operation.name``,
  ``gen_ai.provider.name``, ``gen_ai.request.model`` and ``gen_ai.response.model``; the
  conventions have no cost, so ``budgetguard.cost`` (counter, ``USD``, same attributes plus
  ``budgetguard.estimated``) adds what each priced call cost.
- the call's GenAI span gets ``gen_ai.usage.input_tokens`` / ``gen_ai.usage.output_tokens`` (the
  billed numbers, or the estimate when the server reported none), the cache and reasoning
  counts when there are any, and ``budgetguard.*``: ``cost_usd``, ``budgets``, ``scope_path``,
  ``estimated``, ``reserved_usd`` / ``reserved_tokens``, ``under_reserved``, ``endpoint``.
- a refusal adds the span event ``budgetguard.refused`` (which budget, which cap, the numbers).

Which span. When another instrumentation (``opentelemetry-instrumentation-openai-v2``, ...) has
already made the call's span, and it is the active span when the call settles or is refused,
budgetguard adds its attributes to that span and leaves the ``gen_ai.client.*`` metrics to that
instrumentation (recording them twice would double every sum). "The call's span" is an active,
recording span whose ``gen_ai.operation.name`` is an inference operation (chat,
text_completion, embeddings, generate_content) for the same request model, that budgetguard
has not already written to. Otherwise budgetguard makes one span per call (kind CLIENT, named
``"{operation} {model}"``, a child of the span active at settlement) when the call settles:
its start time is set back by the call's duration (start of the call to its settlement) and
it ends at once, so it covers the call as a span made at the start would have.

A stream settles while its caller reads it, after ``create()`` returned, when an
instrumentation's span for it is no longer active: a stream therefore gets a span of
budgetguard's own, beside the instrumentation's.

Nothing here sees a prompt, a completion, a header or a key: events carry numbers and names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from budgetguard import _events
from budgetguard._errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = [
    "COST_METRIC",
    "DURATION_METRIC",
    "REFUSED_EVENT",
    "TOKEN_METRIC",
    "disable_telemetry",
    "enable_telemetry",
    "telemetry_enabled",
]

TOKEN_METRIC = "gen_ai.client.token.usage"
DURATION_METRIC = "gen_ai.client.operation.duration"
COST_METRIC = "budgetguard.cost"
REFUSED_EVENT = "budgetguard.refused"
#: The bucket boundaries the conventions give each histogram.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

#: budgetguard's endpoint -> gen_ai.operation.name (the Responses API is a chat operation).
_OPERATIONS = {
    "chat.completions": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}
_INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "embeddings", "generate_content"})
#: Set on every span budgetguard has written a call to: a span is one call's, never two.
_CLAIM = "budgetguard.estimated"

_lock = threading.Lock()
_active: _Telemetry | None = None


def enable_telemetry(
    *, meter_provider: MeterProvider | None = None, tracer_provider: TracerProvider | None = None
) -> None:
    """Report every call from now on to OpenTelemetry: the GenAI metrics and span attributes,
    the ``budgetguard.cost`` counter, and an event on refusals (see the module's docstring).

    Without providers the global ones are used (those ``opentelemetry.trace.set_tracer_provider``
    and ``opentelemetry.metrics.set_meter_provider`` set, also later). Calling it again replaces
    the providers. Raises ``ConfigError`` when ``opentelemetry-api`` is not installed.
    """
    global _active
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        raise ConfigError(
            "OpenTelemetry is not installed: pip install 'budgetguard-sdk[otel]' (opentelemetry-api)"
        ) from None
    version = _version()
    tracer = trace.get_tracer("budgetguard", version, tracer_provider)
    meter = metrics.get_meter("budgetguard", version, meter_provider)
    telemetry = _Telemetry(
        tracer,
        tokens=meter.create_histogram(
            TOKEN_METRIC,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        ),
        duration=meter.create_histogram(
            DURATION_METRIC,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        ),
        cost=meter.create_counter(
            COST_METRIC, unit="USD", description="What the GenAI calls cost, in US dollars."
        ),
    )
    with _lock:
        if _active is not None:
            _events.unsubscribe(_active)
        _active = telemetry
        _events.subscribe(telemetry)
        _events.set_origin_capture(trace.get_current_span)


def disable_telemetry() -> None:
    """Stop reporting to OpenTelemetry (spans already made stay as they are)."""
    global _active
    with _lock:
        if _active is not None:
            _events.unsubscribe(_active)
        _active = None
        _events.set_origin_capture(None)


def telemetry_enabled() -> bool:
    return _active is not None


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("budgetguard-sdk")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return ""


class _Telemetry:
    """The event listener: one per ``enable_telemetry`` call."""

    def __init__(self, tracer: Tracer, *, tokens: Histogram, duration: Histogram, cost: Counter) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = tracer
        self._tokens = tokens
        self._duration = duration
        self._cost = cost

    def __call__(self, event: _events.Event) -> None:
        if isinstance(event, _events.CallSettled):
            self.settled(event)
        else:
            self.refused(event)

    # -- a call settled -------------------------------------------------------------------------
    def settled(self, event: _events.CallSettled) -> None:
        operation = _OPERATIONS.get(event.endpoint, event.endpoint)
        common: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": event.provider,
            "gen_ai.request.model": event.request_model,
            # The model that was billed: the response's, else the request's.
            "gen_ai.response.model": event.response_model or event.request_model,
        }
        usage = event.usage
        span = self._call_span(operation, event.request_model, event.origin)
        if span is not None:
            span.set_attributes(_usage_attributes(event))
        else:
            now = time.time_ns()
            own = self._tracer.start_span(
                f"{operation} {event.request_model}",
                kind=self._trace.SpanKind.CLIENT,
                attributes={**common, **_usage_attributes(event)},
                start_time=now - int(max(event.duration, 0.0) * 1e9),
            )
            own.end(end_time=now)
            # The GenAI metrics are the span maker's: recorded here only when budgetguard made it.
            self._tokens.record(usage.prompt_tokens, {**common, "gen_ai.token.type": "input"})
            if event.endpoint != "embeddings":
                self._tokens.record(usage.completion_tokens, {**common, "gen_ai.token.type": "output"})
            self._duration.record(max(event.duration, 0.0), common)
        if not usage.unpriced_requests:
            self._cost.add(float(usage.cost_usd), {**common, "budgetguard.estimated": event.estimated})

    # -- a budget refused a request -------------------------------------------------------------
    def refused(self, event: _events.CallRefused) -> None:
        operation = _OPERATIONS.get(event.endpoint, event.endpoint)
        attributes: dict[str, Any] = {
            "budgetguard.budget": event.budget,
            "budgetguard.limit_kind": event.limit_kind,
            "budgetguard.limit": _number(event.limit),
            "budgetguard.spent": _number(event.spent),
            "budgetguard.reserved": _number(event.reserved),
            "budgetguard.requested": _number(event.requested),
        }
        if event.key is not None:
            attributes["budgetguard.key"] = event.key
        if event.detail:
            attributes["budgetguard.detail"] = event.detail
        span = self._call_span(operation, event.request_model, event.origin)
        if span is not None:
            span.add_event(REFUSED_EVENT, attributes)
            return
        own = self._tracer.start_span(
            f"{operation} {event.request_model}",
            kind=self._trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": event.provider,
                "gen_ai.request.model": event.request_model,
                "budgetguard.endpoint": event.endpoint,
                "error.type": "BudgetExceeded",
            },
        )
        own.add_event(REFUSED_EVENT, attributes)
        own.set_status(
            self._trace.Status(
                self._trace.StatusCode.ERROR, f"budget {event.budget!r} refused the request before sending"
            )
        )
        own.end()

    def _call_span(self, operation: str, model: str, origin: object) -> Span | None:
        """The span another instrumentation made for this call (see the module): the one active
        when the call started (a stream settles later), else the one active now."""
        span = origin if isinstance(origin, self._trace.Span) else self._trace.get_current_span()
        if not span.is_recording():
            return None
        attributes = getattr(span, "attributes", None)  # the SDK's spans show theirs
        if not isinstance(attributes, Mapping) or _CLAIM in attributes:
            return None
        if attributes.get("gen_ai.operation.name") not in _INFERENCE_OPERATIONS:
            return None
        requested = attributes.get("gen_ai.request.model")
        if requested is not None and requested != model:
            return None
        return span


def _usage_attributes(event: _events.CallSettled) -> dict[str, Any]:
    usage = event.usage
    out: dict[str, Any] = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
        "budgetguard.endpoint": event.endpoint,
        "budgetguard.estimated": event.estimated,
        "budgetguard.budgets": list(event.budgets),
        "budgetguard.scope_path": event.scope_path,
        "budgetguard.under_reserved": event.under_reserved,
    }
    for name, count in (
        ("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens),
        ("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens),
        ("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens),
    ):
        if count:
            out[name] = count
    if usage.unpriced_requests:
        out["budgetguard.unpriced"] = True
    else:
        out["budgetguard.cost_usd"] = float(usage.cost_usd)
    if event.budgets:
        out["budgetguard.reserved_usd"] = float(event.reserved_usd)
        out["budgetguard.reserved_tokens"] = event.reserved_tokens
    return out


def _number(value: Decimal | int) -> float | int:
    return float(value) if isinstance(value, Decimal) else value
