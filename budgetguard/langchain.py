"""A drop-in for LangChain's ``get_openai_callback``, built on :func:`budgetguard.track_usage`.

Change the import and nothing else::

    # from langchain_community.callbacks import get_openai_callback
    from budgetguard.langchain import get_openai_callback

    with get_openai_callback() as cb:
        llm.invoke("Tell me a joke")
        for chunk in llm.stream("And another"):     # streams are counted too
            ...
    print(cb)                   # LangChain's seven-line summary
    print(cb.total_cost)        # a float, as in LangChain

The handler has LangChain's attributes (``total_tokens``, ``prompt_tokens``,
``prompt_tokens_cached``, ``completion_tokens``, ``reasoning_tokens``, ``successful_requests``,
``total_cost``) and prints the same text. Unlike LangChain's callback it counts every OpenAI SDK
call made inside the block, by LangChain or anything else, streams included; blocks nest (an
outer block counts what inner ones count); and models newer than LangChain's price table are
priced, never counted at $0. ``cb.usage`` is the exact :class:`budgetguard.Usage` (``Decimal``
cost). The block works with ``with`` and ``async with``.

This module does not import LangChain: it works whether LangChain is installed or not.
"""

from __future__ import annotations

from types import TracebackType

from budgetguard._scopes import UsageTracker, track_usage
from budgetguard._usage import Usage

__all__ = ["OpenAICallbackHandler", "get_openai_callback"]


class OpenAICallbackHandler:
    """What ``get_openai_callback()`` yields: LangChain's handler attributes, read live.

    Every attribute reads the tracker's tally when read, so values are current inside the
    block and final after it. This is not a LangChain callback handler (it needs no callback
    registration): it counts at the OpenAI SDK, below LangChain.
    """

    def __init__(self, tracker: UsageTracker | None = None) -> None:
        self.tracker = tracker if tracker is not None else track_usage(name="get_openai_callback")

    # -- the context manager ---------------------------------------------------------------------
    def __enter__(self) -> OpenAICallbackHandler:
        self.tracker.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.tracker.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> OpenAICallbackHandler:
        await self.tracker.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.tracker.__aexit__(exc_type, exc, tb)

    # -- LangChain's attributes --------------------------------------------------------------------
    @property
    def usage(self) -> Usage:
        """Everything counted so far, exactly (cost as ``Decimal``)."""
        return self.tracker.usage

    @property
    def total_tokens(self) -> int:
        return self.usage.total_tokens

    @property
    def prompt_tokens(self) -> int:
        return self.usage.prompt_tokens

    @property
    def prompt_tokens_cached(self) -> int:
        return self.usage.cached_tokens

    @property
    def completion_tokens(self) -> int:
        return self.usage.completion_tokens

    @property
    def reasoning_tokens(self) -> int:
        return self.usage.reasoning_tokens

    @property
    def successful_requests(self) -> int:
        return self.usage.requests

    @property
    def total_cost(self) -> float:
        """Dollars as a float, like LangChain's (``usage.cost_usd`` is the exact ``Decimal``)."""
        return float(self.usage.cost_usd)

    def __repr__(self) -> str:
        # LangChain's OpenAICallbackHandler.__repr__, line for line (print(cb) shows it).
        usage = self.usage
        return (
            f"Tokens Used: {usage.total_tokens}\n"
            f"\tPrompt Tokens: {usage.prompt_tokens}\n"
            f"\t\tPrompt Tokens Cached: {usage.cached_tokens}\n"
            f"\tCompletion Tokens: {usage.completion_tokens}\n"
            f"\t\tReasoning Tokens: {usage.reasoning_tokens}\n"
            f"Successful Requests: {usage.requests}\n"
            f"Total Cost (USD): ${float(usage.cost_usd)}"
        )


def get_openai_callback() -> OpenAICallbackHandler:
    """A fresh handler to use as ``with get_openai_callback() as cb:`` (or ``async with``).

    Counts every OpenAI SDK call made inside the block; see the module docstring.
    """
    return OpenAICallbackHandler()
