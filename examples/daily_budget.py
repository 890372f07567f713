"""A daily cap that survives restarts (SQLite) and a per-user cap, from YAML.

.venv/bin/python examples/daily_budget.py
.venv/bin/budgetguard report --store sqlite:///budgetguard-example.db
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _client import openai_client

import budgetguard as bg

CONFIG = """
version: 1
defaults:
  store: sqlite:///budgetguard-example.db
budgets:
  daily:
    max_usd: 5.00
    window: 1d
    timezone: UTC
    alerts: ["50%", "90%"]
  per-user:
    max_usd: 0.001
    window: 1h
    rolling: true
    keyed: true
"""

with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "budgetguard.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    bg.configure(path)

with openai_client() as client:
    for user in ["alice", "bob", "alice"]:
        try:
            with bg.Budget.named("daily") as daily, bg.Budget.named("per-user", key=user) as mine:
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": f"Hello from {user}"}],
                    max_completion_tokens=32,
                )
            print(f"{user}: ${mine.spent_usd} this hour; everyone today: ${daily.spent_usd}")
        except bg.BudgetExceeded as exc:
            print(f"{user}: refused ({exc.limit_kind} cap of the {exc.budget!r} budget)")
