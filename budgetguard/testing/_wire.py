"""Shapes shared by every endpoint: outcomes, OpenAI-style errors, usage objects, the request turn."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._script import Fault, Reply
from ._sse import EventStream

__all__ = [
    "JsonOutcome",
    "Outcome",
    "PromptCounter",
    "PromptUsage",
    "RequestError",
    "StreamOutcome",
    "Turn",
    "apply_usage_override",
    "chat_usage",
    "error_outcome",
    "fault_outcome",
    "json_type",
    "output_cap",
    "positive_int",
    "require_model",
    "responses_usage",
    "service_tier",
]

PromptCounter = Callable[[str, dict[str, Any]], int]
"""``(endpoint, body) -> prompt tokens``: how a ``Simulator`` bills the prompt of a request.

``endpoint`` is ``"chat.completions"``, ``"responses"`` (also for ``/responses/input_tokens``),
``"completions"`` or ``"embeddings"``; ``body`` is the parsed JSON body, already checked by the
endpoint. The default is the simulator's own counter (``budgetguard.testing._counting``, written
from OpenAI's public counting rules and independent of budgetguard's estimator). Bodies found in
``Simulator(recorded_usage=...)`` are billed their recorded usage instead, without a call to the
counter. An exception raised here is answered with a 500 the SDKs do not retry.
"""


@dataclass(frozen=True)
class PromptUsage:
    """The prompt side of a request's usage: its tokens and details (``cached_tokens``, ...)."""

    tokens: int
    details: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class JsonOutcome:
    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class StreamOutcome:
    stream: EventStream
    cut_after_tokens: int | None = None
    delay: float = 0.0
    #: How the frames go on the wire: server-sent events, or Amazon's event-stream (Bedrock).
    framing: Literal["sse", "aws-eventstream"] = "sse"

    def frames_to_send(self) -> list[bytes]:
        if self.cut_after_tokens is None:
            return self.stream.frames
        return self.stream.frames[: self.stream.cut_index(self.cut_after_tokens)]


Outcome = JsonOutcome | StreamOutcome


class RequestError(Exception):
    """The request is invalid; answered with an OpenAI-shaped 4xx error."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request (simulated)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (simulated)."),
    403: ("permission_error", None, "You are not allowed to do this (simulated)."),
    404: ("invalid_request_error", None, "Not found (simulated)."),
    409: ("invalid_request_error", None, "Conflict (simulated)."),
    422: ("invalid_request_error", None, "Unprocessable entity (simulated)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (simulated)."),
    500: ("server_error", None, "The server had an error while processing your request (simulated)."),
    502: ("server_error", None, "Bad gateway (simulated)."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later (simulated)."),
    504: ("server_error", None, "Gateway timeout (simulated)."),
}


def error_outcome(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    error_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JsonOutcome:
    kind, default_code, _ = _ERROR_KINDS.get(status, _default_kind(status))
    body = {
        "error": {
            "message": message,
            "type": error_type or kind,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }
    return JsonOutcome(status, body, dict(headers or {}))


def fault_outcome(fault: Fault) -> JsonOutcome:
    _, _, default_message = _ERROR_KINDS.get(fault.status, _default_kind(fault.status))
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        # Both forms: SDKs read retry-after-ms first; other clients only know retry-after.
        headers["retry-after-ms"] = str(round(fault.retry_after * 1000))
        headers["retry-after"] = f"{fault.retry_after:g}"
    return error_outcome(fault.status, fault.message or default_message, code=fault.code, headers=headers)


def _default_kind(status: int) -> tuple[str, str | None, str]:
    if status >= 500:
        return "server_error", None, f"Server error {status} (simulated)."
    return "invalid_request_error", None, f"Client error {status} (simulated)."


@dataclass
class Turn:
    """One request being answered: its body and lazy access to the script and the counter.

    Endpoints validate and count first, then take the reply, so a rejected request consumes nothing.
    """

    endpoint: str
    body: dict[str, Any]
    take_reply: Callable[[], Reply | None]
    counter: PromptCounter
    new_id: Callable[[str], str]
    default_tokens: int
    recorded: Callable[[str, dict[str, Any]], PromptUsage | None]
    created: int = field(default_factory=lambda: int(time.time()))

    def prompt(self) -> PromptUsage:
        """The recorded prompt usage of this body if there is one, else the counter's count."""
        recorded = self.recorded(self.endpoint, self.body)
        if recorded is not None:
            return recorded
        count = self.counter(self.endpoint, self.body)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise TypeError(f"the prompt counter returned {count!r} for {self.endpoint}, not an int >= 0")
        return PromptUsage(count)


def require_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not model:
        raise RequestError("you must provide a model parameter", param="model")
    if not isinstance(model, str):
        raise RequestError(f"Invalid type for 'model': expected a string, but got {type(model).__name__}.")
    return model


def positive_int(body: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(f"Invalid type for '{name}': expected an integer, but got {value!r}.", param=name)
    if value < 1:
        raise RequestError(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
            param=name,
        )
    return value


def output_cap(body: Mapping[str, Any], *names: str) -> int | None:
    """The first output cap present among ``names`` (validated), else ``None``."""
    for name in names:
        if body.get(name) is not None:
            return positive_int(body, name)
    return None


_TO_CHAT = {
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "input_tokens_details": "prompt_tokens_details",
    "output_tokens_details": "completion_tokens_details",
}
_TO_RESPONSES = {chat: responses for responses, chat in _TO_CHAT.items()}


def chat_usage(prompt: PromptUsage, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt.tokens,
        "completion_tokens": completion,
        "total_tokens": prompt.tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0, **prompt.details},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(prompt: PromptUsage, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt.tokens,
        "input_tokens_details": {"cached_tokens": 0, **prompt.details},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt.tokens + completion,
    }


_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
               dict: "an object", type(None): "null"}  # fmt: skip


def json_type(value: object) -> str:
    """How the API names the JSON type of ``value`` in its errors ("an integer", "an array")."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def apply_usage_override(usage: dict[str, Any], reply: Reply | None, *, responses: bool) -> dict[str, Any]:
    """``usage`` with the reply's forced fields merged in (names translated to this endpoint)."""
    if reply is None or reply.usage is None:
        return usage
    names = _TO_RESPONSES if responses else _TO_CHAT
    merged = dict(usage)
    for key, value in reply.usage.items():
        key = names.get(key, key)
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    if "total_tokens" not in reply.usage:
        prompt, completion = (
            ("input_tokens", "output_tokens") if responses else ("prompt_tokens", "completion_tokens")
        )
        merged["total_tokens"] = merged[prompt] + merged[completion]
    return merged


def service_tier(body: Mapping[str, Any], reply: Reply | None) -> str:
    """The tier a response reports: the reply's, else the requested one ("auto" runs as "default")."""
    if reply is not None and reply.service_tier:
        return reply.service_tier
    requested = body.get("service_tier")
    return requested if isinstance(requested, str) and requested != "auto" else "default"
