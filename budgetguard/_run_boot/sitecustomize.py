"""Started by ``budgetguard run`` (it puts this directory first on ``PYTHONPATH``).

Python imports ``sitecustomize`` at start-up. This one runs the ``sitecustomize`` it shadows (the
user's or the distribution's, if any), then, when ``$BUDGETGUARD_RUN`` is set, enters the run's
budgets process-wide (``budgetguard._run.bootstrap``). It never stops the program: a process that
cannot be metered (a Python without budgetguard) says so on stderr and runs on, and ``run``'s
summary names it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    """Import the next ``sitecustomize`` on ``sys.path``, as ``site`` would have."""
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]
    ours = sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")  # the one this shadows, if any
    except ImportError as exc:
        if exc.name != "sitecustomize":
            print(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{exc!r}", file=sys.stderr)
        if ours is not None:
            sys.modules["sitecustomize"] = ours
    except Exception as exc:
        print(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{exc!r}", file=sys.stderr)


def _note(runs: list[dict[str, object]], metered: bool, reason: str = "") -> None:
    record = {
        "pid": os.getpid(),
        "executable": sys.executable,
        "argv": sys.argv,
        "metered": metered,
        "reason": reason,
    }
    for run in runs:
        try:
            with open(os.path.join(str(run["dir"]), f"proc-{os.getpid()}.json"), "w", encoding="utf-8") as f:
                json.dump(record, f)
        except (OSError, KeyError, TypeError):
            pass


def _boot() -> None:
    text = os.environ.get("BUDGETGUARD_RUN")
    if not text:
        return
    try:
        runs = [run for run in json.loads(text) if isinstance(run, dict)]
    except (ValueError, TypeError):
        print("budgetguard run: $BUDGETGUARD_RUN is not valid; this process is not metered", file=sys.stderr)
        return
    try:
        from budgetguard._run import bootstrap
    except ImportError as exc:
        reason = f"this Python cannot import budgetguard ({exc})"
        print(
            f"budgetguard run: {reason}: process {os.getpid()} ({sys.executable}) is NOT metered; "
            "run it with the Python budgetguard is installed in",
            file=sys.stderr,
        )
        _note(runs, False, reason)
        return
    try:
        bootstrap(runs)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        print(f"budgetguard run: process {os.getpid()} is NOT metered: {reason}", file=sys.stderr)
        _note(runs, False, reason)
        return
    _note(runs, True)


_chain()
_boot()
