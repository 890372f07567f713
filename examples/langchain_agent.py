"""LangChain calls are metered like any other: budgetguard hooks the openai SDK underneath.

.venv/bin/python examples/langchain_agent.py      (needs the langchain extra)
"""

from __future__ import annotations

import os

from langchain_openai import ChatOpenAI

import budgetguard as bg
from budgetguard.testing import Simulator

with Simulator() as sim:
    options = {} if os.environ.get("OPENAI_API_KEY") else {"base_url": sim.base_url, "api_key": "simulator"}
    # An output cap keeps each reservation small; without one the model maximum is reserved.
    llm = ChatOpenAI(model="gpt-4o-mini", max_completion_tokens=256, **options)  # type: ignore[arg-type]
    with bg.Budget(max_usd=0.01, name="langchain") as budget:
        print(llm.invoke("Write a haiku about budgets").content)
        print("".join(str(chunk.content) for chunk in llm.stream("And one about tokens")))
        llm.batch(["one", "two"])
    print(budget.usage)
