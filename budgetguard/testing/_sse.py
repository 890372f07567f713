"""Server-sent events as OpenAI frames them, and where a scripted stream is cut."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DONE", "EventStream"]

DONE = b"data: [DONE]\n\n"


def _frame(data: Mapping[str, Any], event: str | None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class EventStream:
    """The frames of one streamed response, with the index after each token delta.

    A stream cut after ``k`` tokens sends the opening events and the first ``k`` token deltas;
    if there are fewer, it sends all of them and stops before the closing events.
    """

    frames: list[bytes] = field(default_factory=list)
    _after_token: list[int] = field(default_factory=list)
    _closing_from: int | None = None

    def add(self, data: Mapping[str, Any], *, event: str | None = None, token: bool = False) -> None:
        self.frames.append(_frame(data, event))
        if token:
            self._after_token.append(len(self.frames))

    def add_raw(self, frame: bytes) -> None:
        self.frames.append(frame)

    def mark_closing(self) -> None:
        """The frames added from now on close the stream (finish reason, usage, completed)."""
        self._closing_from = len(self.frames)

    def cut_index(self, after_tokens: int) -> int:
        """How many frames to send before dropping the connection."""
        if after_tokens < len(self._after_token):
            # Frames between two deltas (e.g. the next tool call's opening) belong to the next token.
            return self._after_token[after_tokens - 1] if after_tokens > 0 else self._first_token_index()
        return self._closing_from if self._closing_from is not None else len(self.frames)

    def _first_token_index(self) -> int:
        return self._after_token[0] - 1 if self._after_token else len(self.frames)
