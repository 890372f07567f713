"""The ``budgetguard`` command: run, demo, estimate, prices, check and report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import budgetguard
from budgetguard._config import CONFIG_ENV, Config, config_problems, store_file, usd_argument
from budgetguard._errors import BudgetGuardError, ConfigError
from budgetguard._ledger import DEFAULT_STORE, SpendRecord
from budgetguard._report import GROUP_FIELDS, ReportFormat, plain_usd

__all__ = ["main"]

_DESCRIPTION = """\
Meter and cap what OpenAI SDK calls cost.

Commands that read a configuration (estimate, prices, check, report, run) take --config FILE,
or else the file named by $BUDGETGUARD_CONFIG."""

_RUN_DESCRIPTION = f"""\
Run an unmodified program under a budget. Every Python process the program starts (itself
included) is metered: each request is estimated and reserved before it is sent, and refused
when it would not fit. The caps hold for all of them together. At exit the usage summary is
printed to stderr.

Exit status: the program's own; {{refused}} when it failed after a budget refused one of its
requests; 128+N when signal N killed it; 127 when the command is not found; 2 for an error of
budgetguard run itself (a bad option or configuration).

Python processes are metered through a sitecustomize module put first on PYTHONPATH (any
sitecustomize it shadows still runs); interpreters started with -E, -I or -S, or that cannot
import budgetguard, are not, and the summary names them. "python" is looked up in the
environment budgetguard is installed in first. Configuration: --config FILE or
${CONFIG_ENV}."""

_ENDPOINT_KEYS = (
    ("input", "responses"),
    ("instructions", "responses"),
    ("messages", "chat.completions"),
    ("prompt", "completions"),
)


def _infer_endpoint(body: dict[str, Any], path: str) -> str:
    for key, endpoint in _ENDPOINT_KEYS:
        if key in body:
            # Embeddings also take "input"; their models say so.
            if key == "input" and "embedding" in str(body.get("model", "")):
                return "embeddings"
            return endpoint
    raise BudgetGuardError(
        f"{path}: cannot tell the endpoint (no messages, input, instructions or prompt); "
        "pass --endpoint chat.completions|responses|completions|embeddings"
    )


def _config_path(args: argparse.Namespace) -> str | None:
    """--config, else $BUDGETGUARD_CONFIG, else None."""
    path: str | None = getattr(args, "config", None)
    return path or os.environ.get(CONFIG_ENV, "").strip() or None


def _load_config(args: argparse.Namespace, *, check_stores: bool = False) -> Config | None:
    """The configuration of --config, else of $BUDGETGUARD_CONFIG (errors name the variable)."""
    from budgetguard._config import config_from_env, load_config

    path: str | None = getattr(args, "config", None)
    if path:
        return load_config(path, check_stores=check_stores)
    return config_from_env(check_stores=check_stores)


def _configure(args: argparse.Namespace) -> None:
    """Apply the configuration (prices, aliases, defaults) the command names, if any."""
    from budgetguard._settings import configure

    path: str | None = getattr(args, "config", None)
    if path:
        configure(path)
    elif os.environ.get(CONFIG_ENV, "").strip():
        configure()  # reads $BUDGETGUARD_CONFIG


# --- the commands ---------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from budgetguard._demo import run_demo

    _configure(args)
    return run_demo(real=args.real, model=args.model, max_usd=args.max_usd)


def _cmd_estimate(args: argparse.Namespace) -> int:
    from budgetguard._preflight import estimate_request

    _configure(args)
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise BudgetGuardError(f"{args.file}: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BudgetGuardError(f"{args.file}: a request body must be a JSON object")
    endpoint = args.endpoint or _infer_endpoint(body, args.file)
    estimate = estimate_request(endpoint, body)
    if args.json:
        data = estimate.to_dict()
        for name in ("min_usd", "max_usd"):  # exact strings, in plain decimal
            data[name] = plain_usd(Decimal(str(data[name])))
        print(json.dumps(data, indent=2))
        return 0
    cap = estimate.max_output_tokens
    print(f"endpoint:        {estimate.endpoint}")
    print(f"model:           {estimate.model}")
    print(f"prompt tokens:   {estimate.prompt_tokens} (reserved as {estimate.prompt_tokens_upper})")
    print(
        f"output cap:      {cap if cap is not None else 'none'} (reserved {estimate.reserved_output_tokens})"
    )
    print(
        f"cost:            ${plain_usd(estimate.min_usd)} to ${plain_usd(estimate.max_usd)}  "
        f"[{estimate.price_source}]"
    )
    print(f"exact:           {'yes' if estimate.exact else 'no'}")
    for reason in estimate.reasons:
        print(f"  - {reason}")
    return 0


def _cmd_prices(args: argparse.Namespace) -> int:
    from budgetguard._pricing import price_data, update_price_data
    from budgetguard._settings import current_settings

    if args.url and not args.update:
        raise BudgetGuardError("--url names where --update fetches from: pass --update too")
    if args.update:
        fetched = update_price_data(url=args.url)
        date = None if fetched.date is None else fetched.date.isoformat(timespec="seconds")
        if args.json:
            print(json.dumps({"updated": True, "price_data": fetched.label, "price_data_date": date,
                              "cache": fetched.path, "url": fetched.url}))  # fmt: skip
        else:
            print(f"updated: {fetched.label}; cached in {fetched.path}")
    elif not args.models:
        raise BudgetGuardError("name a MODEL to show its rates, or pass --update to fetch newer prices")
    if not args.models:
        return 0
    _configure(args)
    book = current_settings().price_book()
    for model in args.models:
        resolved = book.resolve(model)
        rates = resolved.rates
        line = {
            "model": model,
            "priced_as": resolved.canonical,
            "source": resolved.source,
            "input_per_1m": plain_usd(rates.input),
            "output_per_1m": plain_usd(rates.output),
            "cached_input_per_1m": None if rates.cached_input is None else plain_usd(rates.cached_input),
            "web_search_per_1k": None if rates.web_search is None else plain_usd(rates.web_search),
            "file_search_per_1k": None if rates.file_search is None else plain_usd(rates.file_search),
        }
        if args.json:  # the data in use: its date, and fetched or installed
            data = price_data()
            line["price_data"] = data.label
            line["price_data_date"] = None if data.date is None else data.date.isoformat(timespec="seconds")
        print(
            json.dumps(line) if args.json else "  ".join(f"{k}={v}" for k, v in line.items() if v is not None)
        )
    if not args.json:
        print(f"price data: {price_data().label}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from budgetguard._config import load_config

    path = args.file or _config_path(args)
    if path is None:
        raise BudgetGuardError(f"name the file to check: budgetguard check FILE (or set ${CONFIG_ENV})")
    try:
        config = (
            load_config(args.file, check_stores=True) if args.file else _load_config(args, check_stores=True)
        )
        assert config is not None
    except ConfigError as exc:
        problems = config_problems(exc)
        for problem in problems:
            print(problem, file=sys.stderr)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        print(f"budgetguard check: {path}: {count}", file=sys.stderr)
        return 2
    names = ", ".join(sorted(config.budgets)) or "none"
    print(f"{path}: OK (version {config.version}, {len(config.budgets)} budgets: {names})")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from budgetguard._ledger import open_ledger
    from budgetguard._report import render_report

    if args.store is not None:
        stores = [args.store]
        missing = _missing_stores(stores)
        if missing:
            raise BudgetGuardError(missing[args.store])
    else:
        stores = _configured_stores(args)
        missing = _missing_stores(stores)
        for problem in missing.values():
            print(f"budgetguard report: note: {problem}", file=sys.stderr)
        stores = [store for store in stores if store not in missing]
        if not stores:
            raise BudgetGuardError("no spend recorded yet: none of the configured stores exists")
    records: list[SpendRecord] = []
    for store in stores:
        records.extend(open_ledger(store).records(budget=args.budget))
    records.sort(key=lambda record: record.time)
    if args.html is not None:
        _write_html_report(args, records)
        return 0
    fmt: ReportFormat = "json" if args.json else "csv" if args.csv else "table"
    print(render_report(records, group_by=args.by, fmt=fmt, tz=args.tz), end="")
    return 0


def _write_html_report(args: argparse.Namespace, records: list[SpendRecord]) -> None:
    """The page of ``report --html FILE`` (``-``: standard output), caps from the configuration."""
    from budgetguard._report_html import caps_from_config, render_html

    config = _load_config(args)
    caps = None if config is None else caps_from_config(config)
    page = render_html(records, caps=caps, group_by=args.by, tz=args.tz)
    if args.html == "-":
        sys.stdout.write(page)
    else:
        Path(args.html).write_text(page, encoding="utf-8")


def _configured_stores(args: argparse.Namespace) -> list[str]:
    config = _load_config(args)
    if config is None:
        raise BudgetGuardError(f"report needs --store URI, --config FILE or ${CONFIG_ENV}")
    path = config.source
    budgets = [config.budgets[args.budget]] if args.budget in config.budgets else config.budgets.values()
    stores = sorted({budget.store for budget in budgets if budget.store != DEFAULT_STORE})
    if not stores:
        raise BudgetGuardError(f"{path}: no budget keeps its spend in a persistent store")
    return stores


def _missing_stores(stores: Sequence[str]) -> dict[str, str]:
    """Why each store that is a file on this host that does not exist cannot be read."""
    out = {}
    for store in stores:
        path = store_file(store)
        if path is not None and not os.path.exists(path):
            out[store] = f"{store}: the file {path} does not exist (nothing has been recorded there)"
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from budgetguard._run import run_program

    program = list(args.program)
    if program[:1] == ["--"]:
        program = program[1:]
    return run_program(
        program,
        max_usd=args.max_usd,
        max_tokens=args.max_tokens,
        max_requests=args.max_requests,
        config=getattr(args, "config", None),
        budget=args.budget,
        key=args.key,
    )


# --- argument types -------------------------------------------------------------------------------


def _usd(text: str) -> Decimal:
    try:
        return usd_argument(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _group_by(text: str) -> tuple[str, ...]:
    fields = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [field for field in fields if field not in GROUP_FIELDS]
    if unknown or not fields:
        raise argparse.ArgumentTypeError(
            f"choose fields from {', '.join(GROUP_FIELDS)}, separated by commas; got {text!r}"
        )
    return fields


def _zone(text: str) -> str:
    from budgetguard._windows import load_zone

    try:
        load_zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# --- the parser -----------------------------------------------------------------------------------


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,  # keeps a --config given before the command
        help=f"the YAML configuration (default: ${CONFIG_ENV})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="budgetguard", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {budgetguard.__version__}")
    parser.add_argument("--config", metavar="FILE", help=f"the YAML configuration (default: ${CONFIG_ENV})")
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")

    def command(name: str, summary: str, run: Callable[[argparse.Namespace], int], **kw: Any) -> Any:
        description = kw.pop("description", summary[:1].upper() + summary[1:] + ".")
        added = sub.add_parser(
            name,
            help=summary,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kw,
        )
        added.set_defaults(run=run)
        return added

    from budgetguard._run import EXIT_REFUSED

    run = command(
        "run",
        "run a program under a budget and print what it spent",
        _cmd_run,
        description=_RUN_DESCRIPTION.format(refused=EXIT_REFUSED),
        usage="budgetguard run [options] -- COMMAND [ARGS...]",
    )
    run.add_argument("--max-usd", type=_usd, metavar="USD", help="the most the whole run may spend, in USD")
    run.add_argument("--max-tokens", type=_count, metavar="N", help="the most tokens the whole run may use")
    run.add_argument(
        "--max-requests", type=_count, metavar="N", help="the most requests the whole run may send"
    )
    run.add_argument(
        "--budget",
        metavar="NAME",
        help="also charge the named budget of the configuration (shared, persistent)",
    )
    run.add_argument("--key", metavar="KEY", help="the key, when the named budget is keyed (one cap per key)")
    _add_config(run)
    run.add_argument(
        "program", nargs=argparse.REMAINDER, metavar="COMMAND", help="the program and its arguments, after --"
    )

    demo = command("demo", "run the demo agent (against the built-in simulator unless --real)", _cmd_demo)
    demo.add_argument("--real", action="store_true", help="call the OpenAI API (needs OPENAI_API_KEY)")
    demo.add_argument(
        "--model", default="gpt-4o-mini", help="the model the agent uses (default: gpt-4o-mini)"
    )
    demo.add_argument(
        "--max-usd",
        type=_usd,
        default=Decimal("0.001"),
        metavar="USD",
        help="the run's budget in USD (default: 0.001, which runs out before the last step)",
    )
    _add_config(demo)

    estimate = command("estimate", "estimate what a request body costs before it is sent", _cmd_estimate)
    estimate.add_argument("file", metavar="FILE", help="the request body as JSON (- reads standard input)")
    estimate.add_argument(
        "--endpoint",
        choices=["chat.completions", "responses", "completions", "embeddings"],
        help="the API the body is for (default: told from its keys)",
    )
    estimate.add_argument("--json", action="store_true", help="print the estimate as JSON")
    _add_config(estimate)

    prices = command(
        "prices",
        "show the rates a model is priced at (USD per 1M tokens) and the date of the price data",
        _cmd_prices,
    )
    prices.add_argument(
        "models", nargs="*", metavar="MODEL", help="model names, as a request or response names them"
    )
    prices.add_argument("--json", action="store_true", help="print one JSON object per model")
    prices.add_argument(
        "--update",
        action="store_true",
        help="first fetch genai-prices' newest price data and cache it (used while newer than the "
        "installed genai-prices)",
    )
    prices.add_argument(
        "--url", metavar="URL", help="with --update: fetch from this URL (a mirror) instead of genai-prices'"
    )
    _add_config(prices)

    check = command(
        "check",
        "validate a configuration file and list every problem (file, line, key)",
        _cmd_check,
    )
    check.add_argument("file", nargs="?", metavar="FILE", help=f"the file to check (default: ${CONFIG_ENV})")
    _add_config(check)

    report = command("report", "print recorded spend per budget, key, model and day", _cmd_report)
    report.add_argument(
        "--store",
        metavar="URI",
        help="the ledger to read, e.g. sqlite:///spend.db (default: the configuration's)",
    )
    report.add_argument("--budget", metavar="NAME", help="only this budget's spend")
    report.add_argument(
        "--by",
        type=_group_by,
        default=("budget", "key", "model", "day"),
        metavar="FIELDS",
        help=f"group rows by these, comma-separated: {', '.join(GROUP_FIELDS)} "
        "(default: budget,key,model,day)",
    )
    report.add_argument(
        "--tz", type=_zone, default="UTC", metavar="ZONE", help="the time zone of days (default: UTC)"
    )
    group = report.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print JSON (money as exact strings)")
    group.add_argument("--csv", action="store_true", help="print CSV (one row per group, no total)")
    group.add_argument(
        "--html",
        metavar="FILE",
        help="write one self-contained HTML page (charts per day, model, key and refusals, and the "
        "table; caps from the configuration) to FILE (- for standard output)",
    )
    _add_config(report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except BrokenPipeError:  # `budgetguard report | head`: the reader has seen enough
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ConfigError as exc:
        for problem in config_problems(exc):
            print(f"budgetguard {args.subcommand}: error: {problem}", file=sys.stderr)
        return 2
    except (BudgetGuardError, OSError) as exc:
        print(f"budgetguard {args.subcommand}: error: {exc}", file=sys.stderr)
        return 2
