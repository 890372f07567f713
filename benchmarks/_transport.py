"""An in-process transport for the openai SDK: the real client stack, no sockets.

Benchmarks use it so the numbers measure the SDK plus budgetguard, not a server.
"""

from __future__ import annotations

import json
from typing import Any

CHAT_RESPONSE = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 7,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }
).encode()

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Say hello in five words."}]


def make_client() -> Any:
    """An OpenAI client whose HTTP layer answers in-process (httpx2 for openai 3.x, httpx before)."""
    from openai import OpenAI

    try:
        import httpx2 as httpx  # openai >= 3
    except ImportError:  # pragma: no cover - openai 1.x/2.x
        import httpx  # type: ignore[no-redef]

    def handler(request: Any) -> Any:
        return httpx.Response(200, content=CHAT_RESPONSE, headers={"content-type": "application/json"})

    return OpenAI(
        api_key="bench",
        base_url="http://bench.invalid/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def chat(client: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=32)
