"""``budgetguard run``: an unmodified program under a process-wide budget.

The program runs as a child process. ``run`` puts ``_run_boot`` first on ``PYTHONPATH``; its
``sitecustomize`` (chained to any ``sitecustomize`` of the user's that it shadows) calls
``bootstrap`` in every Python process started with that environment: the program, and the Python
processes it starts in turn. Each one enters the run's budget process-wide, charged to one
temporary SQLite store that all of them share, so the cap holds for the whole process tree.
When the program exits (successfully, failing, refused or killed), ``run`` reads the store and
prints the summary to stderr.

Files in the run's directory tell ``run`` what happened in its processes: ``proc-<pid>.json``
(each Python process started, and whether it is metered), ``refusals.jsonl`` (each request the
run's budgets refused) and ``stopped-<pid>.json`` (a process ended by an uncaught
``BudgetExceeded``).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from budgetguard._errors import BudgetExceeded, BudgetGuardError, ConfigError, find_budget_exceeded
from budgetguard._ledger import SpendRecord, check_store_uri
from budgetguard._policies import Decision, Policy, Refusal, Refuse
from budgetguard._report import plain_usd
from budgetguard._usage import Usage

__all__ = ["EXIT_REFUSED", "RUN_BUDGET", "RUN_ENV", "bootstrap", "run_program"]

#: The exit status of ``budgetguard run`` when the program failed after a budget refused one of
#: its requests (the program's own status otherwise).
EXIT_REFUSED = 3
#: Started under a run, a Python process finds the runs it belongs to here (a JSON list,
#: outermost first: a ``budgetguard run`` inside another adds its own).
RUN_ENV = "BUDGETGUARD_RUN"
#: The name of the budget ``run`` enters in every process.
RUN_BUDGET = "run"
BOOT_DIR = str(Path(__file__).resolve().parent / "_run_boot")


@dataclass(frozen=True)
class RunSpec:
    """One ``budgetguard run``, as its processes read it from ``$BUDGETGUARD_RUN``."""

    dir: str
    store: str
    max_usd: str | None = None
    max_tokens: int | None = None
    max_requests: int | None = None
    budget: str | None = None
    key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if value is not None}


# --- the parent: budgetguard run ------------------------------------------------------------------


def run_program(
    command: Sequence[str],
    *,
    max_usd: Decimal | None = None,
    max_tokens: int | None = None,
    max_requests: int | None = None,
    config: str | None = None,
    budget: str | None = None,
    key: str | None = None,
    out: IO[str] | None = None,
) -> int:
    """Run ``command`` under the run's budget and print the summary to ``out`` (stderr).

    Returns the program's exit status (128 + N when signal N killed it), ``EXIT_REFUSED`` when
    it failed after a budget refused one of its requests, 127 when the command is not found and
    126 when it cannot be executed.
    """
    from budgetguard._config import CONFIG_ENV

    out = sys.stderr if out is None else out
    if not command:
        raise BudgetGuardError(
            "name the program to run after --: budgetguard run --max-usd 1 -- python app.py"
        )
    config_path = config or os.environ.get(CONFIG_ENV, "").strip() or None
    if config_path is not None:
        from budgetguard._settings import configure

        config_path = os.path.abspath(config_path)
        configure(config_path if config else None)  # a broken file fails here, before the program starts
    if budget is not None:
        from budgetguard._scopes import named_budget

        if config_path is None:
            raise ConfigError(f"--budget {budget} needs a configuration: --config FILE or ${CONFIG_ENV}")
        named_budget(budget, key)  # the budget exists, takes this key, and its store opens
    elif key is not None:
        raise ConfigError("--key applies to a keyed budget: add --budget NAME")

    with tempfile.TemporaryDirectory(prefix="budgetguard-run-", ignore_cleanup_errors=True) as workdir:
        spec = RunSpec(
            dir=workdir,
            store=f"sqlite:///{os.path.join(workdir, 'spend.db')}",
            max_usd=None if max_usd is None else plain_usd(max_usd),
            max_tokens=max_tokens,
            max_requests=max_requests,
            budget=budget,
            key=key,
        )
        # The parent creates the database (every process of the run then opens it) and reads it
        # at the end. Its own connection: open_ledger's are shared with the rest of the process.
        ledger = check_store_uri(spec.store).from_uri(spec.store, clock=time.time)
        try:
            status = _spawn(command, _child_env(spec, config_path), out)
            records = ledger.records(budget=RUN_BUDGET)
        finally:
            ledger.close()
        outcome = _Outcome.read(workdir)
    code = EXIT_REFUSED if status != 0 and outcome.refused else status
    named = _named_state(budget, key) if budget is not None else None
    caps = (max_usd, max_tokens, max_requests)
    _print_summary(out, command, status, code, records, caps, outcome, named)
    return code


def _child_env(spec: RunSpec, config_path: str | None) -> dict[str, str]:
    from budgetguard._config import CONFIG_ENV

    env = dict(os.environ)
    runs: list[dict[str, Any]] = []
    with contextlib.suppress(ValueError, TypeError):
        outer = json.loads(env.get(RUN_ENV, "[]"))
        if isinstance(outer, list):
            runs = [run for run in outer if isinstance(run, dict)]
    env[RUN_ENV] = json.dumps([*runs, spec.to_json()])
    paths = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path and path != BOOT_DIR]
    env["PYTHONPATH"] = os.pathsep.join([BOOT_DIR, *paths])
    if config_path is not None:
        env[CONFIG_ENV] = config_path
    if sys.prefix != sys.base_prefix:
        # Like `uv run`: `python` is the interpreter of the environment budgetguard is installed
        # in (one that can import it), as if that virtual environment were activated.
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = os.pathsep.join(
            [bindir, *(p for p in env.get("PATH", "").split(os.pathsep) if p != bindir)]
        )
        env["VIRTUAL_ENV"] = sys.prefix
    return env


def _spawn(command: Sequence[str], env: dict[str, str], out: IO[str]) -> int:
    try:
        process = subprocess.Popen(list(command), env=env)
    except FileNotFoundError:
        print(f"budgetguard run: command not found: {command[0]}", file=out)
        return 127
    except PermissionError:
        print(f"budgetguard run: cannot execute {command[0]}: permission denied", file=out)
        return 126
    except OSError as exc:
        print(f"budgetguard run: cannot start {command[0]}: {exc.strerror}", file=out)
        return 126
    restore: list[tuple[signal.Signals, Any]] = []
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C reaches the program (same process group); run waits for it to finish and
        # reports. A TERM sent to run is passed on.
        def forward(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

        for signum, handler in ((signal.SIGINT, _ignore), (signal.SIGTERM, forward)):
            restore.append((signum, signal.signal(signum, handler)))
    try:
        status = process.wait()
    finally:
        for signum, previous in restore:
            signal.signal(signum, previous)
    return 128 - status if status < 0 else status


def _ignore(signum: int, frame: FrameType | None) -> None:
    return None


@dataclass(frozen=True)
class _Outcome:
    """What the processes of a run left in its directory."""

    processes: list[dict[str, Any]]
    refusals: list[dict[str, Any]]
    stopped: list[dict[str, Any]]

    @property
    def refused(self) -> bool:
        return bool(self.refusals or self.stopped)

    @classmethod
    def read(cls, workdir: str) -> _Outcome:
        root = Path(workdir)
        processes = [_load(path) for path in sorted(root.glob("proc-*.json"))]
        stopped = [_load(path) for path in sorted(root.glob("stopped-*.json"))]
        refusals: list[dict[str, Any]] = []
        with contextlib.suppress(OSError):
            for line in (root / "refusals.jsonl").read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    refusals.append(json.loads(line))
        return cls([p for p in processes if p], refusals, [s for s in stopped if s])


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _named_state(name: str, key: str | None) -> str | None:
    """The named budget's state after the run (its window's spend, what remains)."""
    try:
        from budgetguard._scopes import named_budget

        named = named_budget(name, key)
        remaining = named.remaining_usd
        who = repr(name) + (f" (key {key!r})" if key is not None else "")
        text = f"budget {who}: ${plain_usd(named.spent_usd)} spent"
        text += " in the current window" if named.window is not None else ""
        if remaining is not None:
            text += f", ${plain_usd(remaining)} of ${plain_usd(named.max_usd or Decimal(0))} remaining"
        return text
    except Exception as exc:  # the summary must print even if the store is unreachable now
        return f"budget {name!r}: cannot read its store now ({exc})"


def _print_summary(
    out: IO[str],
    command: Sequence[str],
    status: int,
    code: int,
    records: Sequence[SpendRecord],
    caps: tuple[Decimal | None, int | None, int | None],
    outcome: _Outcome,
    named: str | None,
) -> None:
    usage = sum((record.usage for record in records), Usage())
    by_model: dict[str, Usage] = {}
    for record in records:
        by_model[record.model] = by_model.get(record.model, Usage()) + record.usage
    lines = ["", f"budgetguard run: {shlex.join(command)}"]
    refused = f" ({len(outcome.refusals)} refused before sending)" if outcome.refusals else ""
    lines.append(f"  requests:  {usage.requests}{refused}")
    lines.append(
        f"  tokens:    {usage.total_tokens} "
        f"(prompt {usage.prompt_tokens}, completion {usage.completion_tokens})"
    )
    lines.append(f"  cost:      ${plain_usd(usage.cost_usd)}")
    unpriced = getattr(usage, "unpriced_requests", 0)
    if unpriced:
        models = ", ".join(sorted(getattr(usage, "unpriced_models", ())))
        lines.append(f"             and {unpriced} requests with no known price ({models}), not in the cost")
    if len(by_model) > 1:
        for model, part in sorted(by_model.items()):
            cost = plain_usd(part.cost_usd)
            lines.append(f"    {model}: {part.requests} requests, {part.total_tokens} tokens, ${cost}")
    max_usd, max_tokens, max_requests = caps
    limits = []
    if max_usd is not None:
        left = max(Decimal(0), max_usd - usage.cost_usd)
        limits.append(f"${plain_usd(usage.cost_usd)} of ${plain_usd(max_usd)} spent, ${plain_usd(left)} left")
    if max_tokens is not None:
        limits.append(f"{usage.total_tokens} of {max_tokens} tokens")
    if max_requests is not None:
        limits.append(f"{usage.requests} of {max_requests} requests")
    if limits:
        lines.append(f"  budget:    {'; '.join(limits)}")
    if named is not None:
        lines.append(f"  {named}")
    metered = sum(1 for process in outcome.processes if process.get("metered"))
    lines.append(f"  processes: {metered} Python process{'' if metered == 1 else 'es'} metered")
    for process in outcome.processes:
        if not process.get("metered"):
            pid, executable, reason = process.get("pid"), process.get("executable"), process.get("reason")
            lines.append(f"  NOT METERED: process {pid} ({executable}): {reason}")
    if not outcome.processes:
        lines.append(
            "  no Python process of this run was metered: run the program with a Python that can "
            "import budgetguard, without -E, -I or -S"
        )
    for stop in outcome.stopped:
        lines.append(f"  stopped:   process {stop.get('pid')} ended on a refusal: {stop.get('message')}")
    if outcome.refusals and not outcome.stopped:
        lines.append(f"  refused:   {outcome.refusals[0].get('message')}")
    if code == EXIT_REFUSED and status != EXIT_REFUSED:
        lines.append(
            f"  exit:      {code} (a budget refused a request; the program's own status was {status})"
        )
    else:
        lines.append(f"  exit:      {code}")
    print("\n".join(lines), file=out, flush=True)


# --- the child: every Python process of the run ----------------------------------------------------


def bootstrap(runs: Sequence[dict[str, Any]]) -> list[Any]:
    """Enter the budgets of ``runs`` (``$BUDGETGUARD_RUN``) process-wide in this process.

    Called by ``_run_boot/sitecustomize.py`` at interpreter start. Returns the scopes entered;
    they are left at exit, and an uncaught ``BudgetExceeded`` is written down for ``run``.
    """
    import atexit

    import budgetguard as bg

    if os.environ.get("BUDGETGUARD_CONFIG", "").strip():  # _config.CONFIG_ENV (not imported: yaml)
        bg.configure()
    entered: list[Any] = []
    for raw in runs:
        fields: dict[str, Any] = {name: raw.get(name) for name in RunSpec.__dataclass_fields__}
        spec = RunSpec(**fields)
        refusals = os.path.join(spec.dir, "refusals.jsonl")
        if spec.budget is not None:
            named = _process_wide_named(spec.budget, spec.key)
            named.policy = Recorded(named.policy, refusals)
            entered.append(named)
        entered.append(
            bg.Budget(
                spec.max_usd,
                spec.max_tokens,
                spec.max_requests,
                name=RUN_BUDGET,
                store=spec.store,
                on_exceed=Recorded(bg.Raise(), refusals),
                process_wide=True,
            )
        )
    for scope in entered:
        scope.__enter__()

    def leave() -> None:
        for scope in reversed(entered):
            with contextlib.suppress(Exception):
                scope.__exit__(None, None, None)

    atexit.register(leave)
    dirs = [str(raw.get("dir")) for raw in runs]
    sys.excepthook = _excepthook(sys.excepthook, dirs)
    return entered


def _takes_process_wide(function: Callable[..., Any]) -> bool:
    try:
        return "process_wide" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _process_wide_named(name: str, key: str | None) -> Any:
    import budgetguard as bg

    named: Any = bg.Budget.named
    if _takes_process_wide(named):
        return named(name, key=key, process_wide=True)
    # Entered in the main thread's context, a named budget covers the main thread and the
    # asyncio tasks and threads given its context (bg.propagate), but not other threads.
    print(
        f"budgetguard run: named budgets cannot be entered process-wide yet: calls from threads "
        f"other than the main one are charged to budget {RUN_BUDGET!r} but not to {name!r}",
        file=sys.stderr,
    )
    return bg.Budget.named(name, key=key)


@dataclass(frozen=True, slots=True)
class Recorded(Policy):
    """A budget's own policy, with every refusal written down for ``budgetguard run``."""

    inner: Policy
    path: str

    @property
    def name(self) -> str:
        return self.inner.name

    def decide(self, refusal: Refusal) -> Decision:
        decision = self.inner.decide(refusal)
        if isinstance(decision, Refuse):
            line = {
                "pid": os.getpid(),
                "kind": refusal.kind,
                "limit": refusal.limit,
                "spent": refusal.spent,
                "reserved": refusal.reserved,
                "requested": refusal.requested,
                "message": _refusal_text(refusal),
            }
            with contextlib.suppress(OSError), open(self.path, "a", encoding="utf-8") as file:
                file.write(json.dumps(line) + "\n")  # one short append: whole lines from every process
        return decision


def _refusal_text(refusal: Refusal) -> str:
    from budgetguard._ledger import picos_to_usd

    def show(value: int) -> str:
        return f"${plain_usd(picos_to_usd(value))}" if refusal.kind == "usd" else f"{value} {refusal.kind}"

    return (
        f"{refusal.kind} limit {show(refusal.limit)}: spent {show(refusal.spent)}, "
        f"reserved {show(refusal.reserved)}, the request needed up to {show(refusal.requested)}"
    )


def _excepthook(
    previous: Callable[[type[BaseException], BaseException, TracebackType | None], Any], dirs: list[str]
) -> Callable[[type[BaseException], BaseException, TracebackType | None], Any]:
    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> Any:
        refusal = _budget_exceeded(value)
        if refusal is not None:
            note = {"pid": os.getpid(), "budget": refusal.budget, "message": _exceeded_text(refusal)}
            for workdir in dirs:
                with contextlib.suppress(OSError):
                    Path(workdir, f"stopped-{os.getpid()}.json").write_text(
                        json.dumps(note), encoding="utf-8"
                    )
        return previous(kind, value, tb)

    return hook


def _exceeded_text(exc: BudgetExceeded) -> str:
    """The refusal in plain decimal (the exception's own text prints Decimals as they come)."""
    if exc.limit_kind == "usd":
        limit, spent, reserved, requested = (
            f"${plain_usd(amount)}"
            for amount in (exc.limit_usd or Decimal(0), exc.spent_usd, exc.reserved_usd, exc.requested_usd)
        )
    else:
        limit, spent, reserved, requested = (
            f"{count} {exc.limit_kind}" for count in (exc.limit, exc.spent, exc.reserved, exc.requested)
        )
    who = repr(exc.budget) + (f" (key {exc.key!r})" if exc.key is not None else "")
    return (
        f"budget {who}: {exc.limit_kind} limit {limit}: spent {spent}, reserved {reserved}, "
        f"the request needed up to {requested}"
    )


def _budget_exceeded(exc: BaseException) -> BudgetExceeded | None:
    """The refusal behind an uncaught exception, also when a framework wrapped it."""
    return find_budget_exceeded(exc)
