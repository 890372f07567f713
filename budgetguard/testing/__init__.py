"""An OpenAI-compatible API simulator on loopback, for tests and demos.

``Simulator`` is a real HTTP server on 127.0.0.1 (JSON and server-sent events) implementing
Chat Completions, Responses, legacy Completions, embeddings and input-token counting, with
scripted replies, exact usage, and faults on demand::

    from openai import OpenAI
    from budgetguard.testing import Reply, Simulator, ToolCall

    with Simulator() as sim:
        client = OpenAI(base_url=sim.base_url, api_key="sim")
        sim.script(Reply(content="hi"), Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))
        sim.fail_next(status=429, retry_after=0.05)
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
        print(sim.requests)

The same server answers the Anthropic Messages API (messages, streams, ``count_tokens``,
batches, the beta namespace) for ``anthropic.Anthropic(base_url=sim.anthropic_base_url,
api_key="sim")``; ``budgetguard.testing._anthropic`` says how, and
``budgetguard.testing._anthropic_counting`` how its input tokens are counted.
"""

from __future__ import annotations

from ._script import ReceivedRequest, Reply, ToolCall
from ._server import Simulator
from ._wire import PromptCounter

__all__ = ["PromptCounter", "ReceivedRequest", "Reply", "Simulator", "ToolCall"]
