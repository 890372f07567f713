"""Count what a function costs, cap a run, and catch the refusal before anything is sent.

.venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

from _client import openai_client

import budgetguard as bg

with openai_client() as client:

    @bg.track_usage
    def summarize(text: str) -> str:
        response = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Summarize in one line: {text}"}],
            max_completion_tokens=60,
        )
        return response.choices[0].message.content or ""

    with bg.Budget(max_usd=0.01, name="run") as run:
        for doc in ["budgets stop runaway agents", "estimates come before requests"]:
            print(summarize(doc))
        # Streams are counted too; budgetguard asks for their usage and hides the extra chunk.
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}], stream=True
        )
        print("".join(chunk.choices[0].delta.content or "" for chunk in stream))

    print("\nsummarize() so far:", bg.usage_of(summarize).cost_usd, "USD")
    print(run.usage)

    try:
        with bg.Budget(max_usd="0.000001", name="tiny"):
            summarize("this request is refused before it leaves the machine")
    except bg.BudgetExceeded as exc:
        print(f"\nrefused: {exc.budget} {exc.limit_kind} limit {exc.limit}, needs up to {exc.requested}")
