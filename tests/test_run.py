"""``budgetguard run``: an unmodified program, and the Python processes it starts, under one budget."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

import budgetguard as bg
from budgetguard._cli import main as cli
from budgetguard._run import EXIT_REFUSED
from budgetguard.testing import Simulator

ROOT = Path(__file__).resolve().parents[1]
PROCESS_WIDE = "process_wide" in inspect.signature(bg.Budget).parameters
needs_process_wide = pytest.mark.skipif(
    not PROCESS_WIDE, reason="bg.Budget(process_wide=True) has not landed in _scopes yet"
)

#: Makes chat calls (100 output tokens each) until told how many, printing each; no budgetguard code.
CALLS = """
import sys
from openai import OpenAI

client = OpenAI(max_retries=0)
for i in range(int(sys.argv[1])):
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi {i}"}], max_completion_tokens=100
    )
    print("call", i, flush=True)
"""


@pytest.fixture
def program(tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with the program; the child processes reach the simulator through the environment."""
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sim")
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    monkeypatch.delenv("BUDGETGUARD_RUN", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "calls.py").write_text(CALLS, encoding="utf-8")
    return tmp_path


def summary_cost(err: str) -> Decimal:
    match = re.search(r"cost:\s+\$([0-9.]+)", err)
    assert match is not None, err
    return Decimal(match.group(1))


def summary_requests(err: str) -> int:
    match = re.search(r"requests:\s+(\d+)", err)
    assert match is not None, err
    return int(match.group(1))


def test_a_program_within_its_budget_runs_to_the_end_and_the_summary_follows(
    program: Path, sim: Simulator, capfd: pytest.CaptureFixture[str]
) -> None:
    assert cli(["run", "--max-usd", "1", "--", sys.executable, "calls.py", "3"]) == 0
    out, err = capfd.readouterr()
    assert out.count("call ") == 3
    assert "budgetguard run:" in err and "calls.py 3" in err
    assert summary_requests(err) == 3 == len(sim.requests)
    assert 0 < summary_cost(err) < 1
    assert "processes: 1 Python process metered" in err
    assert "exit:      0" in err


def test_the_budget_stops_the_program_before_the_request_that_would_overspend(
    program: Path, sim: Simulator, capfd: pytest.CaptureFixture[str]
) -> None:
    code = cli(["run", "--max-usd", "0.0003", "--", sys.executable, "calls.py", "50"])
    out, err = capfd.readouterr()
    assert code == EXIT_REFUSED
    sent = len(sim.requests)
    assert 0 < sent < 50 and out.count("call ") == sent  # the refused request never left
    assert summary_requests(err) == sent
    assert summary_cost(err) <= Decimal("0.0003")
    assert "BudgetExceeded" in err  # the program's own traceback
    assert "1 refused before sending" in err
    assert re.search(
        r"stopped:   process \d+ ended on a refusal: budget 'run': usd limit \$0\.0003: spent \$0\.\d+", err
    )
    assert f"exit:      {EXIT_REFUSED} (a budget refused a request; the program's own status was 1)" in err


def test_the_quickstart_example_runs_under_a_tenth_of_a_cent_and_never_overspends() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "BUDGETGUARD_CONFIG")}
    env["PATH"] = os.pathsep.join(["/usr/bin", "/bin"])  # not activated: `python` is found all the same
    command = ["run", "--max-usd", "0.001", "--", "python", "examples/quickstart.py"]
    result = subprocess.run(
        [sys.executable, "-m", "budgetguard", *command],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode in (0, EXIT_REFUSED), result.stderr
    assert "budgetguard run: python examples/quickstart.py" in result.stderr
    assert summary_cost(result.stderr) <= Decimal("0.001")
    assert "processes: 1 Python process metered" in result.stderr


def test_a_failing_program_keeps_its_exit_status_and_still_gets_its_summary(
    program: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (program / "fails.py").write_text(CALLS + "\nraise SystemExit(7)\n", encoding="utf-8")
    assert cli(["run", "--max-usd", "1", "--", sys.executable, "fails.py", "1"]) == 7
    err = capfd.readouterr().err
    assert summary_requests(err) == 1
    assert "exit:      7" in err


def test_a_refusal_the_program_handles_itself_keeps_its_success_status(
    program: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (program / "handles.py").write_text(
        "import budgetguard as bg, runpy, sys\n"
        "try:\n"
        "    runpy.run_path('calls.py', run_name='__main__')\n"
        "except bg.BudgetExceeded:\n"
        "    print('stopping early, within budget')\n",
        encoding="utf-8",
    )
    assert cli(["run", "--max-requests", "2", "--", sys.executable, "handles.py", "10"]) == 0
    out, err = capfd.readouterr()
    assert "stopping early" in out
    assert summary_requests(err) == 2
    assert "(1 refused before sending)" in err and "refused:   requests limit 2 requests" in err


def test_child_python_processes_are_metered_and_share_one_cap(
    program: Path, sim: Simulator, capfd: pytest.CaptureFixture[str]
) -> None:
    (program / "parent.py").write_text(
        textwrap.dedent("""
            import subprocess, sys
            first = subprocess.run([sys.executable, "calls.py", "3"])
            second = subprocess.run([sys.executable, "calls.py", "3"])
            sys.exit(first.returncode or second.returncode)
        """),
        encoding="utf-8",
    )
    code = cli(["run", "--max-requests", "4", "--", sys.executable, "parent.py"])
    err = capfd.readouterr().err
    assert len(sim.requests) == 4  # 3 from the first child, 1 from the second: one cap for both
    assert summary_requests(err) == 4
    assert "processes: 3 Python processes metered" in err  # the parent and its two children
    assert code == EXIT_REFUSED


@needs_process_wide
def test_calls_from_plain_threads_are_charged_to_the_run(
    program: Path, sim: Simulator, capfd: pytest.CaptureFixture[str]
) -> None:
    (program / "threads.py").write_text(
        textwrap.dedent("""
            from concurrent.futures import ThreadPoolExecutor
            from openai import OpenAI
            client = OpenAI(max_retries=0)
            def ask(i):
                messages = [{"role": "user", "content": str(i)}]
                return client.chat.completions.create(
                    model="gpt-4o-mini", messages=messages, max_completion_tokens=20
                )
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(ask, range(4)))
        """),
        encoding="utf-8",
    )
    assert cli(["run", "--max-usd", "1", "--", sys.executable, "threads.py"]) == 0
    assert summary_requests(capfd.readouterr().err) == 4 == len(sim.requests)


def test_the_users_own_sitecustomize_still_runs(
    program: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    site = program / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import builtins\nbuiltins.USER_SITE = 'ran'\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(site))
    (program / "check.py").write_text(
        "import builtins, sitecustomize\nprint('user site', builtins.USER_SITE)\n"
    )
    assert cli(["run", "--", sys.executable, "check.py"]) == 0
    out, err = capfd.readouterr()
    assert "user site ran" in out
    assert "processes: 1 Python process metered" in err


def test_a_python_that_cannot_import_budgetguard_is_named_not_silently_unmetered(
    program: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    broken = program / "shadow" / "budgetguard"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('not installed here')\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(broken.parent))
    assert cli(["run", "--max-usd", "1", "--", sys.executable, "-c", "print('hello')"]) == 0
    out, err = capfd.readouterr()
    assert "hello" in out
    assert "is NOT metered" in err  # said when the process starts
    assert "processes: 0 Python processes metered" in err and "NOT METERED: process" in err


def test_a_named_budget_from_the_configuration_is_charged_too(
    program: Path, sim: Simulator, capfd: pytest.CaptureFixture[str]
) -> None:
    db = program / "spend.db"
    config = program / "bg.yaml"
    config.write_text(f"version: 1\nbudgets:\n  team:\n    max_requests: 2\n    store: sqlite:///{db}\n")
    code = cli(["run", "--config", str(config), "--budget", "team", "--", sys.executable, "calls.py", "5"])
    err = capfd.readouterr().err
    assert code == EXIT_REFUSED
    assert len(sim.requests) == 2
    assert "budget 'team'" in err
    records = bg.open_ledger(f"sqlite:///{db}").records(budget="team")
    refused = [record for record in records if record.extra.get("outcome") == "refused"]
    assert (len(records) - len(refused), len(refused)) == (2, 1)  # two calls billed, one refused
    bg.close_ledgers()


def test_the_configuration_can_come_from_the_environment(
    program: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    config = program / "bg.yaml"
    config.write_text("version: 1\nbudgets:\n  team: {max_requests: 1}\n")
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(config))
    assert cli(["run", "--budget", "team", "--", sys.executable, "calls.py", "1"]) == 0
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(program / "missing.yaml"))
    assert cli(["run", "--", sys.executable, "calls.py", "1"]) == 2
    assert "missing.yaml: configuration file not found" in capfd.readouterr().err


def test_run_errors_come_before_the_program_starts(
    program: Path, sim: Simulator, capfd: pytest.CaptureFixture[str]
) -> None:
    config = program / "bg.yaml"
    config.write_text("version: 1\nbudgets:\n  team: {max_requests: 1}\n  users: {max_usd: 1, keyed: true}\n")
    assert (
        cli(["run", "--config", str(config), "--budget", "nope", "--", sys.executable, "calls.py", "1"]) == 2
    )
    assert "no budget named 'nope' is configured (configured: team, users)" in capfd.readouterr().err
    assert (
        cli(["run", "--config", str(config), "--budget", "users", "--", sys.executable, "calls.py", "1"]) == 2
    )
    assert "budget 'users' is keyed" in capfd.readouterr().err
    assert cli(["run", "--key", "alice", "--", sys.executable, "calls.py", "1"]) == 2
    assert "--key applies to a keyed budget: add --budget NAME" in capfd.readouterr().err
    assert cli(["run", "--budget", "team", "--", sys.executable, "calls.py", "1"]) == 2
    assert (
        "--budget team needs a configuration: --config FILE or $BUDGETGUARD_CONFIG" in capfd.readouterr().err
    )
    assert cli(["run", "--max-usd", "1"]) == 2
    assert "name the program to run after --" in capfd.readouterr().err
    with pytest.raises(SystemExit):
        cli(["run", "--max-usd", "lots", "--", sys.executable, "calls.py", "1"])
    assert "must be an amount in USD" in capfd.readouterr().err
    assert sim.requests == []


def test_a_missing_command_exits_127_and_a_signal_128_plus_its_number(
    program: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert cli(["run", "--", "no-such-command-budgetguard"]) == 127
    assert "command not found: no-such-command-budgetguard" in capfd.readouterr().err
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert cli(["run", "--", sys.executable, "-c", killed]) == 128 + 15


def test_python_dash_m_budgetguard_run_works_like_the_command(program: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "budgetguard", "run", "--max-usd", "1", "--", "python", "calls.py", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "call 0" in result.stdout
    assert summary_requests(result.stderr) == 1
