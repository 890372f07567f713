"""What the simulator will answer next, and what it has heard so far.

``Reply`` and ``ToolCall`` describe one scripted answer; ``Fault`` one injected HTTP error.
``Script`` is the thread-safe state every server thread shares: the reply queue (FIFO), the
fault queue, the request log and the id counter.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fault", "ReceivedRequest", "Reply", "Script", "ToolCall"]


@dataclass(frozen=True)
class ToolCall:
    """A function call the simulated model makes.

    ``arguments`` is a mapping (sent as compact JSON) or a string sent verbatim, which lets a
    test send arguments that are not valid JSON. ``id`` defaults to a fresh ``call_sim...`` id.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("ToolCall needs a function name")
        if not isinstance(self.arguments, str):
            try:
                json.dumps(self.arguments)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"ToolCall({self.name!r}) arguments are not JSON-serialisable: {exc}"
                ) from exc

    @property
    def arguments_json(self) -> str:
        """The arguments exactly as they go on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True)
class Reply:
    """One scripted answer to a chat, legacy-completions, Responses or Anthropic Messages request.

    With neither ``content`` nor ``tool_calls`` the simulator generates its default text (or a
    JSON instance of the requested schema). The request's output cap still applies to scripted
    content: it is truncated to the cap and reported as ``length`` / ``incomplete``.

    - ``usage``: fields merged over the computed usage, so the server reports exactly these
      numbers. Chat names (``prompt_tokens``, ``completion_tokens``, ``*_tokens_details``) and
      Responses names (``input_tokens``, ...) are both accepted on every endpoint;
      ``total_tokens`` is recomputed unless given.
    - ``omit_usage``: the response carries no usage at all.
    - ``delay``: seconds to wait before the response starts.
    - ``cut_stream_after``: for streamed requests, send this many token deltas and then drop
      the connection without the closing events (no ``[DONE]`` / ``response.completed`` /
      Anthropic ``message_delta``).
    - ``model`` / ``service_tier``: reported instead of the request's model / ``"default"``
      (Anthropic: ``usage.service_tier``, ``"standard"`` by default).
    - ``thinking``: the text of the thinking block an Anthropic Messages request that enables
      ``thinking`` receives (``""``: no thinking block); ignored by the OpenAI endpoints.
    """

    content: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    usage: Mapping[str, Any] | None = None
    omit_usage: bool = False
    delay: float = 0.0
    cut_stream_after: int | None = None
    model: str | None = None
    service_tier: str | None = None
    thinking: str | None = None

    def __post_init__(self) -> None:
        # A tuple keeps the frozen dataclass hashable and immune to later list mutation.
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if not all(isinstance(call, ToolCall) for call in self.tool_calls):
            raise TypeError("Reply.tool_calls must contain ToolCall objects")
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError(f"Reply.delay must be a finite number of seconds >= 0, not {self.delay!r}")
        if self.cut_stream_after is not None and self.cut_stream_after < 0:
            raise ValueError(f"Reply.cut_stream_after must be >= 0, not {self.cut_stream_after!r}")
        if self.usage is not None and self.omit_usage:
            raise ValueError("Reply cannot both force usage and omit it")


@dataclass(frozen=True)
class Fault:
    """An HTTP error the server returns instead of answering."""

    status: int
    retry_after: float | None = None
    message: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"a fault status must be an HTTP error (400-599), not {self.status}")
        if self.retry_after is not None and not (math.isfinite(self.retry_after) and self.retry_after >= 0):
            raise ValueError(f"retry_after must be a finite number of seconds >= 0, not {self.retry_after!r}")


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server received it.

    ``headers`` has lower-cased names. ``body`` is the parsed JSON object, or ``{}`` when the
    request had no body or its body was not a JSON object.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]


class Script:
    """Shared, lock-protected simulator state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._faults: deque[Fault] = deque()
        self._requests: list[ReceivedRequest] = []
        self._ids = 0

    def push(self, replies: Sequence[Reply]) -> None:
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"script() takes Reply objects, not {type(reply).__name__}")
        with self._lock:
            self._replies.extend(replies)

    def add_faults(self, fault: Fault, times: int) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def take_reply(self) -> Reply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None

    def take_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def pending(self) -> tuple[int, int]:
        with self._lock:
            return len(self._replies), len(self._faults)

    def new_id(self, prefix: str) -> str:
        """``prefix`` plus a number unique within this simulator (ids are deterministic)."""
        with self._lock:
            self._ids += 1
            return f"{prefix}sim{self._ids:06d}"

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self._faults.clear()
            self._requests.clear()
            self._ids = 0
