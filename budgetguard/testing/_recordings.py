"""Recorded usage to replay: what the real API billed for a recorded request body.

A recording is one JSON object (a line of a JSONL file, or a mapping) with at least::

    {"endpoint": "chat.completions", "request": {...the body sent...},
     "usage": {"prompt_tokens": 111, "prompt_tokens_details": {"cached_tokens": 0}, ...}}

``endpoint`` is ``chat.completions``, ``responses``, ``completions`` or ``embeddings``; the
usage is in that endpoint's names (``input_tokens`` / ``input_tokens_details`` for
Responses). Other fields (``response_model``, ``features``, notes) are ignored.

Matching: a request is replayed when its endpoint and body equal a recording's, compared as
canonical JSON (keys sorted, compact) after dropping the fields that do not change what the
prompt is billed and that clients, SDKs and recorders add or strip on their own:
``stream`` and ``stream_options`` (delivery), ``max_tokens``, ``max_completion_tokens`` and
``max_output_tokens`` (output caps; recorders strip them) and ``encoding_format`` (the openai
SDK adds ``"base64"`` to embeddings). Every other field must be equal, values included
(``0`` and ``0.0`` differ). ``/v1/responses/input_tokens`` replays ``responses`` recordings.
When two recordings share a key, the first one wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from ._wire import PromptUsage

__all__ = ["IGNORED_FIELDS", "Recordings", "RecordingsSource", "canonical_body"]

# Delivery, output caps and the embeddings encoding: none of them changes the prompt's bill.
IGNORED_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "encoding_format",
    }
)
_USAGE_NAMES = {
    "chat.completions": ("prompt_tokens", "prompt_tokens_details"),
    "completions": ("prompt_tokens", "prompt_tokens_details"),
    "embeddings": ("prompt_tokens", "prompt_tokens_details"),
    "responses": ("input_tokens", "input_tokens_details"),
}

RecordingsSource = str | os.PathLike[str] | Iterable[Mapping[str, Any]]
"""A JSONL file's path, or the recordings themselves."""


class Recordings:
    """Recorded prompt usage, looked up by endpoint and canonical body."""

    def __init__(self, source: RecordingsSource) -> None:
        self._usage: dict[tuple[str, str], PromptUsage] = {}
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            with path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    if line.strip():
                        self._add(_parse_line(line, f"{path}:{number}"), f"{path}:{number}")
        else:
            for index, record in enumerate(source):
                self._add(record, f"recording {index}")

    def __len__(self) -> int:
        return len(self._usage)

    def lookup(self, endpoint: str, body: Mapping[str, Any]) -> PromptUsage | None:
        """The recorded prompt usage of ``body`` on ``endpoint``, if it was recorded."""
        return self._usage.get((endpoint, canonical_body(body)))

    def _add(self, record: object, where: str) -> None:
        if not isinstance(record, Mapping):
            raise ValueError(f"{where}: a recording must be a JSON object")
        endpoint, body, usage = record.get("endpoint"), record.get("request"), record.get("usage")
        if endpoint not in _USAGE_NAMES:
            raise ValueError(f"{where}: endpoint must be one of {', '.join(_USAGE_NAMES)}, not {endpoint!r}")
        if not isinstance(body, Mapping) or not isinstance(usage, Mapping):
            raise ValueError(f"{where}: 'request' and 'usage' must be JSON objects")
        tokens_name, details_name = _USAGE_NAMES[endpoint]
        tokens, details = usage.get(tokens_name), usage.get(details_name) or {}
        if not _count(tokens):
            raise ValueError(f"{where}: usage.{tokens_name} must be an integer >= 0, not {tokens!r}")
        if not isinstance(details, Mapping) or not all(_count(v) for v in details.values()):
            raise ValueError(f"{where}: usage.{details_name} must map names to integers >= 0")
        self._usage.setdefault((endpoint, canonical_body(body)), PromptUsage(tokens, dict(details)))


def canonical_body(body: Mapping[str, Any]) -> str:
    """``body`` as compact JSON with sorted keys, without the fields matching ignores."""
    kept = {key: value for key, value in body.items() if key not in IGNORED_FIELDS}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _parse_line(line: str, where: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
