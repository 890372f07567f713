"""The Anthropic Messages API, as the ``anthropic`` SDK calls it, on the same simulator.

Routes (under ``Simulator.anthropic_base_url``, which is the server's root: the SDK adds
``/v1/...`` itself; the beta namespace, ``client.beta.messages``, calls the same paths with an
``anthropic-beta`` header, and a ``?beta=true`` query is accepted and ignored):

- ``POST /v1/messages``: a Message (JSON) or, with ``"stream": true``, Anthropic's SSE
  sequence: ``message_start`` (input usage, ``output_tokens`` at most 1), then per content
  block ``content_block_start``, its deltas (``thinking_delta`` then ``signature_delta``,
  ``text_delta``, ``input_json_delta``: one per token) and ``content_block_stop``, one ``ping``
  after the first block opens, then ``message_delta`` (``stop_reason`` and the cumulative
  usage) and ``message_stop``. ``Reply(cut_stream_after=N)`` sends N token deltas and drops
  the connection; past the last token it stops before ``message_delta``.
- The same Messages API as the cloud clients call it, the model in the path and
  ``anthropic_version`` required in the body (the SDK sets it): Google Vertex AI's ``POST
  [/v1]/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict`` (JSON) and
  ``:streamRawPredict`` (SSE), for ``AnthropicVertex(base_url=sim.anthropic_base_url, ...)``;
  Amazon Bedrock's ``POST /model/{model id}/invoke`` (JSON) and
  ``/invoke-with-response-stream`` (the same events in Amazon's event-stream framing), for
  ``AnthropicBedrock(base_url=sim.anthropic_base_url, ...)``. Bedrock answers with Anthropic's
  name for the model (``us.anthropic.claude-sonnet-4-5-20250929-v1:0`` answers
  ``claude-sonnet-4-5-20250929``), as the real service does.
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``; consumes no scripted reply.
- ``POST /v1/messages/batches``: answers every request at once (each valid one takes the
  next scripted reply, in order) and returns the batch ``in_progress``; the first
  ``GET /v1/messages/batches/{id}`` (a poll) ends it, and from then on ``results_url``
  (``GET /v1/messages/batches/{id}/results``) serves the JSONL results. A request whose params
  are invalid is an ``errored`` result and takes no reply. ``GET /v1/messages/batches`` lists.

Content: a thinking block first when the request enables ``thinking`` (``enabled`` or
``adaptive``): ``Reply.thinking``, else ``default_tokens`` tokens of the default text, at most
``budget_tokens``; ``Reply(thinking="")`` sends none. Then the text (``Reply.content``, else the
default text, or a minimal instance of an ``output_config.format`` JSON schema) and a
``tool_use`` block per scripted ``ToolCall`` (its ``input`` is the arguments as an object,
``{}`` when they do not parse as one; a stream sends the argument text verbatim). ``max_tokens``
caps thinking, text and tool input together, in that order (``stop_reason: "max_tokens"``;
``max_tokens: 0`` answers no content); a ``stop_sequences`` entry found in the text cuts it
there (``"stop_sequence"``); scripted tool calls end with ``"tool_use"``, anything else with
``"end_turn"``.

Usage: ``input_tokens`` from the request (``budgetguard.testing._anthropic_counting``, or the
simulator's ``prompt_counter`` called with endpoint ``"messages"``); ``output_tokens`` are the
stand-in tokenizer's tokens of the thinking, text and tool input generated. Prompt caching:
for each ``cache_control`` breakpoint (at most 4; the top-level ``cache_control`` marks the
whole prompt) the prefix ending there is billed what the counter charges the request cut
there. The longest prefix this simulator has seen before (same model, tools, tool choice,
system and messages up to the breakpoint, markers aside) is ``cache_read_input_tokens``; the
tokens from there to the last breakpoint are written, each span under its breakpoint's
``ttl`` (``5m`` by default, or ``1h``) in ``cache_creation``, summed in
``cache_creation_input_tokens``; what follows the last breakpoint is ``input_tokens``. Entries
never expire and have no minimum length; ``Simulator.reset()`` forgets them.
``usage.service_tier`` is ``"standard"`` (``"batch"`` in batches) unless ``Reply.service_tier``
says otherwise. ``Reply(usage=...)`` is merged over the computed usage, in Anthropic names or
OpenAI ones (``prompt_tokens`` -> ``input_tokens``, ``completion_tokens`` -> ``output_tokens``,
``*_tokens_details.cached_tokens`` -> ``cache_read_input_tokens``; ``total_tokens`` is dropped);
``server_tool_use`` (``{"web_search_requests": n}``) appears only when scripted so; a forced
``cache_creation`` recomputes ``cache_creation_input_tokens`` and a forced
``cache_creation_input_tokens`` alone is reported as 5-minute writes. ``Reply(omit_usage=True)``
leaves usage out of the message and the stream events (the real API never does that).

Errors have Anthropic's shape, ``{"type": "error", "error": {"type": ..., "message": ...}}``,
with the message naming the field (``max_tokens: Field required``); consecutive messages of
the same role are accepted, as the API combines them, and so are ``system``-role messages of
text (the SDK's ``MessageParam`` includes ``SystemMessageParam``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from budgetguard._errors import EstimateError

from ._anthropic_counting import (
    STAND_IN_MODEL,
    Breakpoint,
    cache_breakpoints,
    count_message_tokens,
    prefix_key,
)
from ._generate import Generation, OutputFormat, generate
from ._script import Fault, Reply, Script
from ._sse import EventStream
from ._wire import JsonOutcome, Outcome, PromptCounter, RequestError, StreamOutcome, json_type

__all__ = [
    "ANTHROPIC_PREFIX",
    "AnthropicRequest",
    "AnthropicState",
    "BytesOutcome",
    "InputUsage",
    "anthropic_error_outcome",
    "anthropic_fault_outcome",
    "is_anthropic_path",
    "route_anthropic",
]

log = logging.getLogger("budgetguard.testing")

ANTHROPIC_PREFIX = "/v1/messages"
_DOUBLED_PREFIX = "/v1" + ANTHROPIC_PREFIX  # what Anthropic(base_url=sim.base_url) calls
MAX_BREAKPOINTS = 4
MIN_THINKING_BUDGET = 1024
_BATCH_PATH = re.compile(r"/batches/([^/]+)(/results)?")
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ROLES = ("user", "assistant", "system")  # the SDK's MessageParam includes SystemMessageParam
_THINKING_TYPES = ("enabled", "disabled", "adaptive")
_TOOL_CHOICES = ("auto", "any", "tool", "none")
_TTLS = ("5m", "1h")

_ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Bad request (simulated)."),
    401: ("authentication_error", "invalid x-api-key (simulated)."),
    402: ("billing_error", "Billing error (simulated)."),
    403: ("permission_error", "Your API key does not have permission to use this resource (simulated)."),
    404: ("not_found_error", "Not found (simulated)."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes (simulated)."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit (simulated)."),
    500: ("api_error", "Internal server error (simulated)."),
    504: ("timeout_error", "Request timed out (simulated)."),
    529: ("overloaded_error", "Overloaded (simulated)."),
}


# --- outcomes and errors ----------------------------------------------------------------------


@dataclass(frozen=True)
class BytesOutcome:
    """A response body sent as is (the JSONL of batch results)."""

    status: int
    content: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


# The Messages API on the clouds: (model, streamed) from the path.
_VERTEX_PATH = re.compile(
    r"(?:/v1)?/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)"
)
_BEDROCK_PATH = re.compile(r"/model/([^/]+)/(invoke|invoke-with-response-stream)")
_BEDROCK_VENDOR = re.compile(r"(?:[a-z-]+\.)?anthropic\.")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")


def is_anthropic_path(path: str) -> bool:
    """Whether ``path`` (query stripped) belongs to the Messages API (or misses it by a ``/v1``)."""
    return (
        any(path == prefix or path.startswith(prefix + "/") for prefix in (ANTHROPIC_PREFIX, _DOUBLED_PREFIX))
        or _VERTEX_PATH.fullmatch(path) is not None
        or _BEDROCK_PATH.fullmatch(path) is not None
    )


def anthropic_error_outcome(
    status: int, message: str, *, error_type: str | None = None, headers: Mapping[str, str] | None = None
) -> JsonOutcome:
    """An Anthropic-shaped error: ``{"type": "error", "error": {"type", "message"}}``."""
    kind = error_type or _error_kind(status)[0]
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JsonOutcome(status, body, dict(headers or {}))


def anthropic_fault_outcome(fault: Fault) -> JsonOutcome:
    """``Simulator.fail_next`` on an Anthropic route; a fault's ``code`` is the error ``type``."""
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["retry-after-ms"] = str(round(fault.retry_after * 1000))
        headers["retry-after"] = f"{fault.retry_after:g}"
    kind, default_message = _error_kind(fault.status)
    return anthropic_error_outcome(
        fault.status, fault.message or default_message, error_type=fault.code or kind, headers=headers
    )


def _error_kind(status: int) -> tuple[str, str]:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    if status >= 500:
        return "api_error", f"Server error {status} (simulated)."
    return "invalid_request_error", f"Client error {status} (simulated)."


def _invalid(message: str, *, status: int = 400) -> RequestError:
    return RequestError(message, status=status)


# --- state ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputUsage:
    """The input side of one request's usage."""

    input_tokens: int
    cache_read: int = 0
    written_5m: int = 0
    written_1h: int = 0


@dataclass
class _Batch:
    id: str
    created_at: datetime
    lines: list[dict[str, Any]]
    succeeded: int
    errored: int
    ended_at: datetime | None = None

    def to_json(self, base_url: str) -> dict[str, Any]:
        ended = self.ended_at is not None
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                "processing": 0 if ended else len(self.lines),
                "succeeded": self.succeeded if ended else 0,
                "errored": self.errored if ended else 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.created_at + timedelta(hours=24)),
            "ended_at": _rfc3339(self.ended_at) if self.ended_at is not None else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{base_url}{ANTHROPIC_PREFIX}/batches/{self.id}/results" if ended else None,
        }


class AnthropicState:
    """What the Anthropic routes remember: the prompt cache and the batches (thread-safe)."""

    def __init__(self, counter: PromptCounter | None = None) -> None:
        self.counter = counter
        self._lock = threading.Lock()
        self._cached: set[str] = set()
        self._batches: dict[str, _Batch] = {}

    def reset(self) -> None:
        with self._lock:
            self._cached.clear()
            self._batches.clear()

    def count(self, body: dict[str, Any]) -> int:
        """The input tokens of ``body``: the custom counter's (endpoint ``"messages"``) or our own."""
        if self.counter is None:
            return count_message_tokens(body)
        count = self.counter("messages", body)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise TypeError(f"the prompt counter returned {count!r} for messages, not an int >= 0")
        return count

    def input_usage(self, body: dict[str, Any]) -> InputUsage:
        """Count ``body`` and split it by the prompt cache, remembering its prefixes."""
        total = self.count(body)
        points = cache_breakpoints(body)
        if not points:
            return InputUsage(total)
        sizes: list[int] = []
        for point in points:  # prefix sizes never shrink along the prompt nor exceed the total
            sizes.append(max(sizes[-1] if sizes else 0, min(total, self.count(point.prefix))))
        keys = [prefix_key(point.prefix) for point in points]
        with self._lock:
            hit = max((i for i, key in enumerate(keys) if key in self._cached), default=-1)
            self._cached.update(keys)
        read = sizes[hit] if hit >= 0 else 0
        written = {"5m": 0, "1h": 0}
        previous = read
        for index in range(hit + 1, len(points)):
            written[_ttl(points[index])] += sizes[index] - previous
            previous = sizes[index]
        return InputUsage(total - sizes[-1], read, written["5m"], written["1h"])

    def add_batch(self, batch: _Batch) -> None:
        with self._lock:
            self._batches[batch.id] = batch

    def poll_batch(self, batch_id: str) -> _Batch:
        """The batch; polling an in-progress batch ends it (its results are ready)."""
        with self._lock:
            batch = self._batch(batch_id)
            if batch.ended_at is None:
                batch.ended_at = datetime.now(UTC)
            return batch

    def ended_batch(self, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._batch(batch_id)
        if batch.ended_at is None:
            raise _invalid(f"Message Batch {batch_id} has not ended yet: retrieve it until its "
                           "processing_status is 'ended', then read its results_url.")  # fmt: skip
        return batch

    def batches(self) -> list[_Batch]:
        with self._lock:
            return sorted(self._batches.values(), key=lambda b: b.id, reverse=True)

    def _batch(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise _invalid(f"No Message Batch found with id {batch_id!r}.", status=404)
        return batch


def _ttl(point: Breakpoint) -> str:
    ttl = point.marker.get("ttl", "5m") if isinstance(point.marker, Mapping) else "5m"
    return ttl if ttl in _TTLS else "5m"


# --- routing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnthropicRequest:
    """One request to an Anthropic route, with what answering it needs."""

    method: str
    path: str
    body: dict[str, Any]
    problem: str | None
    script: Script
    default_tokens: int
    base_url: str  # the server's root URL, for batches' results_url


def route_anthropic(state: AnthropicState, request: AnthropicRequest) -> Outcome | BytesOutcome:
    """Answer ``request``; every failure is an Anthropic-shaped error."""
    try:
        return _dispatch(state, request)
    except RequestError as exc:
        return anthropic_error_outcome(exc.status, exc.message)
    except EstimateError as exc:  # a custom prompt_counter built on budgetguard's estimator
        return anthropic_error_outcome(400, f"the request body is malformed for messages: {exc}")
    except Exception as exc:
        log.exception("the simulator failed on %s %s", request.method, request.path)
        return anthropic_error_outcome(
            500,
            f"the simulator failed on {request.method} {request.path}: {type(exc).__name__}: {exc}",
            headers={"x-should-retry": "false"},  # a bug here does not go away on retry
        )


def _dispatch(state: AnthropicState, request: AnthropicRequest) -> Outcome | BytesOutcome:
    vertex, bedrock = _VERTEX_PATH.fullmatch(request.path), _BEDROCK_PATH.fullmatch(request.path)
    if vertex is not None:
        streamed = vertex.group(2) == "streamRawPredict"
        return _on_cloud(state, request, vertex.group(1), streamed, bedrock=False)
    if bedrock is not None:
        return _on_cloud(state, request, bedrock.group(1), bedrock.group(2) != "invoke", bedrock=True)
    if request.path.startswith(_DOUBLED_PREFIX):
        hint = "Anthropic clients take base_url=sim.anthropic_base_url (the server's root), not sim.base_url."
        raise _invalid(f"Not found: {request.method} {request.path}. {hint}", status=404)
    sub = request.path[len(ANTHROPIC_PREFIX) :]
    if request.method == "POST" and sub in ("", "/count_tokens", "/batches"):
        if request.problem is not None:
            raise _invalid(request.problem)
        if sub == "":
            return _messages(state, request)
        if sub == "/count_tokens":
            _parse(request.body, count_only=True)
            return JsonOutcome(200, {"input_tokens": state.count(request.body)})
        return _create_batch(state, request)
    if request.method == "GET":
        if sub == "/batches":
            batches = [batch.to_json(request.base_url) for batch in state.batches()]
            page = {
                "data": batches,
                "has_more": False,
                "first_id": batches[0]["id"] if batches else None,
                "last_id": batches[-1]["id"] if batches else None,
            }
            return JsonOutcome(200, page)
        match = _BATCH_PATH.fullmatch(sub)
        if match is not None and match.group(2) is None:
            return JsonOutcome(200, state.poll_batch(match.group(1)).to_json(request.base_url))
        if match is not None:
            batch = state.ended_batch(match.group(1))
            content = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in batch.lines)
            return BytesOutcome(200, content.encode(), "application/binary")
    raise _invalid(f"Not found: {request.method} {request.path}", status=404)


def _on_cloud(
    state: AnthropicState, request: AnthropicRequest, model: str, stream: bool, *, bedrock: bool
) -> Outcome:
    """A Messages request to Vertex AI or Bedrock: the model from the path, the rest as usual."""
    if request.method != "POST":
        raise _invalid(f"Not found: {request.method} {request.path}", status=404)
    if request.problem is not None:
        raise _invalid(request.problem)
    body = dict(request.body)
    if "anthropic_version" not in body:
        raise _invalid("anthropic_version: Field required")
    if "model" in body:
        raise _invalid("model: Extra inputs are not permitted (the model is in the URL)")
    for field_name in ("anthropic_version", "anthropic_beta"):
        body.pop(field_name, None)
    if bedrock and "stream" in body:
        raise _invalid("stream: Extra inputs are not permitted (invoke-with-response-stream streams)")
    if not bedrock and bool(body.get("stream")) != stream:
        raise _invalid(f"stream: {'streamRawPredict' if stream else 'rawPredict'} needs stream={stream}")
    body["model"] = model
    body["stream"] = stream
    answered_as = None
    if bedrock:
        answered_as = _BEDROCK_VERSION.sub("", _BEDROCK_VENDOR.sub("", model, count=1))
    outcome = _messages(state, replace(request, body=body), answered_as=answered_as)
    if bedrock and isinstance(outcome, StreamOutcome):
        return replace(outcome, framing="aws-eventstream")
    return outcome


def _messages(state: AnthropicState, request: AnthropicRequest, answered_as: str | None = None) -> Outcome:
    params = _parse(request.body)
    usage_in = state.input_usage(request.body)
    reply = request.script.take_reply()
    answer = _answer(params, usage_in, reply, request.script.new_id, request.default_tokens, "standard")
    if answered_as is not None and not (reply is not None and reply.model):
        answer.message["model"] = answered_as  # the name the service answers with, not the one asked
    delay = reply.delay if reply else 0.0
    if not params.stream:
        return JsonOutcome(200, answer.message, delay=delay)
    return StreamOutcome(_events(answer), reply.cut_stream_after if reply else None, delay)


def _create_batch(state: AnthropicState, request: AnthropicRequest) -> Outcome:
    items = request.body.get("requests")
    if "requests" not in request.body:
        raise _invalid("requests: Field required")
    if not isinstance(items, list):
        raise _invalid(f"requests: Input should be a valid list, not {json_type(items)}")
    if not items:
        raise _invalid("requests: List should have at least 1 item after validation, not 0")
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"requests.{index}"
        if not isinstance(item, Mapping):
            raise _invalid(f"{where}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            raise _invalid(f"{where}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise _invalid(f"{where}.custom_id: custom_id values must be unique, {custom_id!r} is repeated")
        seen.add(custom_id)
        if not isinstance(item.get("params"), Mapping):
            raise _invalid(f"{where}.params: Field required")

    lines: list[dict[str, Any]] = []
    succeeded = errored = 0
    for item in items:
        body = dict(item["params"])
        try:
            params = _parse(body)
            if params.stream:
                raise _invalid("stream: Streaming is not supported in the Message Batches API")
        except RequestError as exc:
            error = {"type": "error", "error": {"type": "invalid_request_error", "message": exc.message}}
            lines.append({"custom_id": item["custom_id"], "result": {"type": "errored", "error": error}})
            errored += 1
            continue
        usage_in = state.input_usage(body)
        reply = request.script.take_reply()
        answer = _answer(params, usage_in, reply, request.script.new_id, request.default_tokens, "batch")
        result = {"type": "succeeded", "message": answer.message}
        lines.append({"custom_id": item["custom_id"], "result": result})
        succeeded += 1
    batch = _Batch(request.script.new_id("msgbatch_"), datetime.now(UTC), lines, succeeded, errored)
    state.add_batch(batch)
    return JsonOutcome(200, batch.to_json(request.base_url))


# --- validation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Params:
    model: str
    max_tokens: int
    stream: bool = False
    thinking: bool = False
    thinking_budget: int | None = None
    stop_sequences: tuple[str, ...] = ()
    output_format: OutputFormat | None = None


def _parse(body: Mapping[str, Any], *, count_only: bool = False) -> _Params:
    """Refuse what the real API refuses, naming the field; the parameters that shape the answer."""
    model = body.get("model")
    if "model" not in body:
        raise _invalid("model: Field required")
    if not isinstance(model, str) or not model:
        raise _invalid(f"model: Input should be a valid string, not {json_type(model)}")
    max_tokens = 0
    if not count_only:
        if "max_tokens" not in body:
            raise _invalid("max_tokens: Field required")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise _invalid(f"max_tokens: Input should be a valid integer, not {json_type(max_tokens)}")
        if max_tokens < 0:
            raise _invalid("max_tokens: Input should be greater than or equal to 0")
    _check_messages(body)
    _check_system(body.get("system"))
    _check_tools(body)
    _check_cache_control(body)
    thinking, budget = _check_thinking(body.get("thinking"), None if count_only else max_tokens)
    stop_sequences = body.get("stop_sequences")
    if stop_sequences is not None and (
        not isinstance(stop_sequences, list) or not all(isinstance(s, str) for s in stop_sequences)
    ):
        raise _invalid("stop_sequences: Input should be a valid list of strings")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid(f"stream: Input should be a valid boolean, not {json_type(stream)}")
    return _Params(
        model=model,
        max_tokens=max_tokens,
        stream=stream,
        thinking=thinking,
        thinking_budget=budget,
        stop_sequences=tuple(s for s in stop_sequences or () if s),
        output_format=_output_format(body),
    )


def _check_messages(body: Mapping[str, Any]) -> None:
    if "messages" not in body:
        raise _invalid("messages: Field required")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid(f"messages: Input should be a valid list, not {json_type(messages)}")
    if not messages:
        raise _invalid("messages: at least one message is required")
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, Mapping):
            raise _invalid(f"{where}: Input should be a valid dictionary, not {json_type(message)}")
        role = message.get("role")
        if "role" not in message:
            raise _invalid(f"{where}.role: Field required")
        if role not in _ROLES:
            raise _invalid(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        if "content" not in message:
            raise _invalid(f"{where}.content: Field required")
        content = message["content"]
        if not isinstance(content, str | list):
            kind = json_type(content)
            raise _invalid(f"{where}.content: Input should be a valid string or list, not {kind}")
        final_assistant = index == len(messages) - 1 and role == "assistant"
        if not content and not final_assistant:
            raise _invalid(f"{where}: all messages must have non-empty content except for the "
                           "optional final assistant message")  # fmt: skip
        for b_index, block in enumerate(content if isinstance(content, list) else ()):
            _check_block(block, f"{where}.content.{b_index}")
            if role == "system" and block["type"] != "text":  # system messages hold text only
                raise _invalid(f"{where}.content.{b_index}.type: Input should be 'text'")


def _check_block(block: object, where: str) -> None:
    if not isinstance(block, Mapping):
        raise _invalid(f"{where}: Input should be a valid dictionary, not {json_type(block)}")
    kind = block.get("type")
    if "type" not in block:
        raise _invalid(f"{where}.type: Field required")
    if not isinstance(kind, str):
        raise _invalid(f"{where}.type: Input should be a valid string")
    if kind == "text":
        if "text" not in block:
            raise _invalid(f"{where}.text: Field required")
        if not isinstance(block["text"], str):
            raise _invalid(f"{where}.text: Input should be a valid string, not {json_type(block['text'])}")
        if not block["text"]:
            raise _invalid("messages: text content blocks must be non-empty")
    elif kind == "tool_use":
        for name in ("id", "name", "input"):
            if name not in block:
                raise _invalid(f"{where}.tool_use.{name}: Field required")
    elif kind == "tool_result" and "tool_use_id" not in block:
        raise _invalid(f"{where}.tool_result.tool_use_id: Field required")
    elif kind == "image" and not isinstance(block.get("source"), Mapping):
        raise _invalid(f"{where}.image.source: Field required")


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _invalid(f"system: Input should be a valid string or list, not {json_type(system)}")
    for index, block in enumerate(system):
        where = f"system.{index}"
        if not isinstance(block, Mapping):
            raise _invalid(f"{where}: Input should be a valid dictionary, not {json_type(block)}")
        if block.get("type") != "text":
            raise _invalid(f"{where}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            raise _invalid(f"{where}.text: Field required")
        if not block["text"]:
            raise _invalid("system: text content blocks must be non-empty")


def _check_tools(body: Mapping[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid(f"tools: Input should be a valid list, not {json_type(tools)}")
        for index, tool in enumerate(tools):
            where = f"tools.{index}"
            if not isinstance(tool, Mapping):
                raise _invalid(f"{where}: Input should be a valid dictionary, not {json_type(tool)}")
            if tool.get("type", "custom") == "custom":  # built-in tools have their own versioned types
                if not isinstance(tool.get("name"), str) or not tool["name"]:
                    raise _invalid(f"{where}.custom.name: Field required")
                if not isinstance(tool.get("input_schema"), Mapping):
                    raise _invalid(f"{where}.custom.input_schema: Field required")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, Mapping) or choice.get("type") not in _TOOL_CHOICES:
            raise _invalid("tool_choice: Input tag found using 'type' does not match any of the expected "
                           "tags: 'auto', 'any', 'tool', 'none'")  # fmt: skip
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise _invalid("tool_choice.tool.name: Field required")


def _check_cache_control(body: Mapping[str, Any]) -> None:
    points = cache_breakpoints(body)
    for point in points:
        marker = point.marker
        if not isinstance(marker, Mapping):
            raise _invalid(f"{point.path}.cache_control: Input should be a valid dictionary")
        if marker.get("type") != "ephemeral":
            raise _invalid(f"{point.path}.cache_control.type: Input should be 'ephemeral'")
        if marker.get("ttl", "5m") not in _TTLS:
            raise _invalid(f"{point.path}.cache_control.ttl: Input should be '5m' or '1h'")
    if len(points) > MAX_BREAKPOINTS:
        raise _invalid(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                       f"Found {len(points)}.")  # fmt: skip


def _check_thinking(thinking: object, max_tokens: int | None) -> tuple[bool, int | None]:
    """(thinking on, its budget); ``max_tokens`` is None for count_tokens."""
    if thinking is None:
        return False, None
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if not isinstance(thinking, Mapping) or kind not in _THINKING_TYPES:
        raise _invalid("thinking: Input tag found using 'type' does not match any of the expected tags: "
                       "'enabled', 'disabled', 'adaptive'")  # fmt: skip
    if kind == "disabled":
        return False, None
    if kind == "adaptive":
        return True, None
    budget = thinking.get("budget_tokens")
    if "budget_tokens" not in thinking:
        raise _invalid("thinking.enabled.budget_tokens: Field required")
    if not isinstance(budget, int) or isinstance(budget, bool):
        kind = json_type(budget)
        raise _invalid(f"thinking.enabled.budget_tokens: Input should be a valid integer, not {kind}")
    if budget < MIN_THINKING_BUDGET:
        raise _invalid(f"thinking.enabled.budget_tokens: Input should be greater than or equal to "
                       f"{MIN_THINKING_BUDGET}")  # fmt: skip
    if max_tokens is not None and max_tokens <= budget:
        raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                       "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                       "#max-tokens-and-context-window-size")  # fmt: skip
    return True, budget


def _output_format(body: Mapping[str, Any]) -> OutputFormat | None:
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, Mapping) else None
    if fmt is None:
        fmt = body.get("output_format")  # the beta's name
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema", {})
    if not isinstance(schema, Mapping):
        raise _invalid("output_config.format.schema: Input should be a valid dictionary")
    return OutputFormat(schema=schema)


# --- answering --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """One content block: as the message has it, and as a stream opens and fills it."""

    final: dict[str, Any]
    opening: dict[str, Any]
    delta_type: str
    delta_key: str
    pieces: tuple[str, ...]


@dataclass(frozen=True)
class _Answer:
    message: dict[str, Any]
    blocks: tuple[_Block, ...]
    usage: dict[str, Any] | None


def _answer(
    params: _Params,
    usage_in: InputUsage,
    reply: Reply | None,
    new_id: Callable[[str], str],
    default_tokens: int,
    default_tier: str,
) -> _Answer:
    blocks: list[_Block] = []
    budget = params.max_tokens
    used = 0
    out_of_tokens = False
    if params.thinking:
        scripted = reply.thinking if reply is not None else None
        cap = budget if params.thinking_budget is None else min(budget, params.thinking_budget)
        thinking_reply = Reply(content=scripted) if scripted is not None else None
        thought = _generate(thinking_reply, cap, default_tokens, None)
        used = thought.tokens
        out_of_tokens = thought.truncated and used >= budget
        if thought.text:
            signature = "sim-signature-" + hashlib.sha256(thought.text.encode()).hexdigest()[:32]
            final: dict[str, Any] = {"type": "thinking", "thinking": thought.text, "signature": signature}
            opening: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
            blocks.append(_Block(final, opening, "thinking_delta", "thinking", thought.pieces))

    stop_sequence: str | None = None
    calls_made = False
    if not out_of_tokens:
        main = _generate(reply, budget - used, default_tokens, params.output_format, new_id)
        hit = _first_stop(main.text, params.stop_sequences)
        if hit is not None:
            cut, stop_sequence = hit
            main = _generate(Reply(content=cut), budget - used, default_tokens, None, new_id)
        out_of_tokens = main.truncated
        used += main.tokens
        if main.text is not None and (main.text or not (main.truncated or stop_sequence is not None)):
            final = {"type": "text", "text": main.text}
            blocks.append(_Block(final, {"type": "text", "text": ""}, "text_delta", "text", main.pieces))
        for call in main.calls:
            calls_made = True
            arguments = _json_object(call.arguments)
            final = {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}
            opening = {**final, "input": {}}
            blocks.append(_Block(final, opening, "input_json_delta", "partial_json", call.pieces))

    if stop_sequence is not None:
        stop_reason = "stop_sequence"
    elif out_of_tokens:
        stop_reason = "max_tokens"
    else:
        stop_reason = "tool_use" if calls_made else "end_turn"
    tier = reply.service_tier if reply is not None and reply.service_tier else default_tier
    usage = _usage_override(_usage(usage_in, used, tier), reply)
    message: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": reply.model if reply is not None and reply.model else params.model,
        "content": [block.final for block in blocks],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
    }
    omit = reply is not None and reply.omit_usage
    if not omit:
        message["usage"] = usage
    return _Answer(message, tuple(blocks), None if omit else usage)


def _generate(
    reply: Reply | None,
    cap: int,
    default_tokens: int,
    output_format: OutputFormat | None,
    new_id: Callable[[str], str] | None = None,
) -> Generation:
    return generate(
        model=STAND_IN_MODEL,
        reply=reply,
        cap=cap,
        default_tokens=default_tokens,
        output_format=output_format,
        new_call_id=(lambda: new_id("toolu_")) if new_id is not None else (lambda: "toolu_unused"),
    )


def _first_stop(text: str | None, stop_sequences: tuple[str, ...]) -> tuple[str, str] | None:
    """(the text before the first stop sequence completed in it, that sequence), else None."""
    if not text or not stop_sequences:
        return None
    found = [(text.find(s) + len(s), text.find(s), s) for s in stop_sequences if s in text]
    if not found:
        return None
    _, start, sequence = min(found)
    return text[:start], sequence


def _json_object(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _usage(usage_in: InputUsage, output_tokens: int, tier: str) -> dict[str, Any]:
    return {
        "input_tokens": usage_in.input_tokens,
        "cache_creation_input_tokens": usage_in.written_5m + usage_in.written_1h,
        "cache_read_input_tokens": usage_in.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage_in.written_5m,
            "ephemeral_1h_input_tokens": usage_in.written_1h,
        },
        "output_tokens": output_tokens,
        "service_tier": tier,
    }


_OPENAI_NAMES = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}
_CACHED_DETAILS = ("prompt_tokens_details", "input_tokens_details")


def _usage_override(usage: dict[str, Any], reply: Reply | None) -> dict[str, Any]:
    """``usage`` with the reply's forced fields merged in (OpenAI names translated)."""
    if reply is None or reply.usage is None:
        return usage
    merged = dict(usage)
    forced: set[str] = set()
    for key, value in reply.usage.items():
        if key == "total_tokens":
            continue
        if key in _CACHED_DETAILS:
            if isinstance(value, Mapping) and "cached_tokens" in value:
                merged["cache_read_input_tokens"] = value["cached_tokens"]
                forced.add("cache_read_input_tokens")
            continue
        key = _OPENAI_NAMES.get(key, key)
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
        forced.add(key)
    creation = merged.get("cache_creation")
    recompute = "cache_creation" in forced and "cache_creation_input_tokens" not in forced
    if recompute and isinstance(creation, dict):
        merged["cache_creation_input_tokens"] = sum(v for v in creation.values() if isinstance(v, int))
    elif "cache_creation_input_tokens" in forced and "cache_creation" not in forced:
        merged["cache_creation"] = {
            "ephemeral_5m_input_tokens": merged["cache_creation_input_tokens"],
            "ephemeral_1h_input_tokens": 0,
        }
    return merged


_DELTA_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens",
                "server_tool_use")  # fmt: skip


def _events(answer: _Answer) -> EventStream:
    events = EventStream()

    def emit(kind: str, payload: Mapping[str, Any], *, token: bool = False) -> None:
        events.add({"type": kind, **payload}, event=kind, token=token)

    start = {**answer.message, "content": [], "stop_reason": None, "stop_sequence": None}
    if answer.usage is not None:
        output = answer.usage.get("output_tokens")
        start_usage = {k: v for k, v in answer.usage.items() if k != "server_tool_use"}
        start_usage["output_tokens"] = min(1, output) if isinstance(output, int) else output
        start["usage"] = start_usage
    emit("message_start", {"message": start})
    pinged = False
    for index, block in enumerate(answer.blocks):
        emit("content_block_start", {"index": index, "content_block": block.opening})
        if not pinged:
            emit("ping", {})
            pinged = True
        for piece in block.pieces:
            delta = {"type": block.delta_type, block.delta_key: piece}
            emit("content_block_delta", {"index": index, "delta": delta}, token=True)
        if block.final["type"] == "thinking":
            delta = {"type": "signature_delta", "signature": block.final["signature"]}
            emit("content_block_delta", {"index": index, "delta": delta})
        emit("content_block_stop", {"index": index})
    if not pinged:
        emit("ping", {})
    events.mark_closing()
    delta = {"stop_reason": answer.message["stop_reason"], "stop_sequence": answer.message["stop_sequence"]}
    closing: dict[str, Any] = {"delta": delta}
    if answer.usage is not None:
        closing["usage"] = {k: answer.usage[k] for k in _DELTA_USAGE if k in answer.usage}
    emit("message_delta", closing)
    emit("message_stop", {})
    return events


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
