"""An in-process transport for the openai SDK: the real client stack, no sockets.

Benchmarks use it so the numbers measure the SDK plus budgetguard, not a server. The workload
is a short chat request: a ~140-token system prompt and a one-line question.
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
            "prompt_tokens": 160,
            "completion_tokens": 7,
            "total_tokens": 167,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }
).encode()

MODEL = "gpt-4o-mini"
# 138 o200k tokens.
SYSTEM_PROMPT = (
    "You are Ada, the support assistant of Northwind Cloud, a hosting company. Answer questions "
    "about accounts, billing, domains, databases and deployments. Be concise and friendly: two or "
    "three sentences unless the user asks for detail. When a question needs account data you "
    "cannot see, say which page of the dashboard shows it (Billing, Domains, Databases or "
    "Deployments) instead of guessing. Never ask for passwords or full card numbers. If the user "
    "reports an outage, give the status page address, status.northwind.example, and offer to open "
    "a ticket. Reply in the language the user writes in, format commands and file paths as inline "
    "code, and quote prices in US dollars."
)
QUESTION = "How do I point my domain at a new deployment?"
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": SYSTEM_PROMPT},
    {"role": "user", "content": QUESTION},
]
MAX_TOKENS = 32
BASE_URL = "http://bench.invalid/v1"


def make_http_client() -> Any:
    """An httpx client (httpx2 for openai 3.x, httpx before) answering every request in-process."""
    try:
        import httpx2 as httpx  # openai >= 3
    except ImportError:  # pragma: no cover - openai 1.x/2.x
        import httpx  # type: ignore[no-redef]

    def handler(request: Any) -> Any:
        return httpx.Response(200, content=CHAT_RESPONSE, headers={"content-type": "application/json"})

    return httpx.Client(transport=httpx.MockTransport(handler))


def make_client() -> Any:
    """An OpenAI client whose HTTP layer answers in-process."""
    from openai import OpenAI

    return OpenAI(api_key="bench", base_url=BASE_URL, max_retries=0, http_client=make_http_client())


def chat(client: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=MAX_TOKENS)


def make_langchain() -> tuple[Any, Any]:
    """A LangChain ``ChatOpenAI`` on the same in-process transport, and the same messages."""
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=MODEL,
        api_key="bench",  # type: ignore[arg-type]
        base_url=BASE_URL,
        max_retries=0,
        http_client=make_http_client(),
        max_completion_tokens=MAX_TOKENS,
    )
    return llm, [("system", SYSTEM_PROMPT), ("user", QUESTION)]
