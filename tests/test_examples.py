"""The examples run as documented, against the simulator when no API key is set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("quickstart.py", "refused: tiny usd limit"),
        ("concurrent_workers.py", "asyncio:"),
        ("daily_budget.py", "everyone today"),
        ("langchain_agent.py", "Successful Requests: 4"),
    ],
)
def test_example_runs(script: str, expected: str, tmp_path: Path) -> None:
    if script == "langchain_agent.py":
        pytest.importorskip("langchain_openai")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
