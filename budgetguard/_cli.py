"""``budgetguard`` on the command line: demo, estimate, prices, check, report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from budgetguard._errors import BudgetGuardError
from budgetguard._ledger import DEFAULT_STORE

__all__ = ["main"]

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


def _cmd_demo(args: argparse.Namespace) -> int:
    from budgetguard._demo import run_demo

    return run_demo(real=args.real, model=args.model, max_usd=args.max_usd)


def _cmd_estimate(args: argparse.Namespace) -> int:
    from budgetguard._preflight import estimate_request

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
        print(json.dumps(estimate.to_dict(), indent=2))
        return 0
    print(f"endpoint:        {estimate.endpoint}")
    print(f"model:           {estimate.model}")
    print(f"prompt tokens:   {estimate.prompt_tokens} (reserved as {estimate.prompt_tokens_upper})")
    cap = estimate.max_output_tokens
    print(
        f"output cap:      {cap if cap is not None else 'none'} (reserved {estimate.reserved_output_tokens})"
    )
    print(f"cost:            ${estimate.min_usd} to ${estimate.max_usd}  [{estimate.price_source}]")
    print(f"exact:           {'yes' if estimate.exact else 'no'}")
    for reason in estimate.reasons:
        print(f"  - {reason}")
    return 0


def _cmd_prices(args: argparse.Namespace) -> int:
    from budgetguard._settings import current_settings

    book = current_settings().price_book()
    for model in args.models:
        resolved = book.resolve(model)
        rates = resolved.rates
        line = {
            "model": model,
            "priced_as": resolved.canonical,
            "source": resolved.source,
            "input_per_1m": str(rates.input),
            "output_per_1m": str(rates.output),
            "cached_input_per_1m": None if rates.cached_input is None else str(rates.cached_input),
        }
        print(
            json.dumps(line) if args.json else "  ".join(f"{k}={v}" for k, v in line.items() if v is not None)
        )
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from budgetguard._config import load_config

    config = load_config(Path(args.file))
    print(
        f"{args.file}: OK (version {config.version}, {len(config.budgets)} budgets: "
        f"{', '.join(sorted(config.budgets)) or 'none'})"
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from budgetguard._ledger import open_ledger
    from budgetguard._report import render_report

    store = args.store
    if store is None:
        from budgetguard._config import load_config

        if args.config is None:
            raise BudgetGuardError("report needs --store URI or --config FILE")
        config = load_config(Path(args.config))
        stores = sorted({b.store for b in config.budgets.values() if b.store != DEFAULT_STORE})
        if not stores:
            raise BudgetGuardError(f"{args.config}: no budget uses a persistent store")
        store = stores[0]
    ledger = open_ledger(store)
    records = ledger.records(budget=args.budget)
    print(render_report(records, fmt="json" if args.json else "csv" if args.csv else "table"), end="")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="budgetguard", description=__doc__)
    parser.add_argument("--config", help="YAML configuration (default: $BUDGETGUARD_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the demo agent (simulator unless --real)")
    demo.add_argument("--real", action="store_true", help="call the OpenAI API (needs OPENAI_API_KEY)")
    demo.add_argument("--model", default="gpt-4o-mini")
    demo.add_argument("--max-usd", default="0.05")
    demo.set_defaults(run=_cmd_demo)

    estimate = sub.add_parser("estimate", help="estimate a request body (JSON file, - for stdin)")
    estimate.add_argument("file")
    estimate.add_argument(
        "--endpoint", choices=["chat.completions", "responses", "completions", "embeddings"]
    )
    estimate.add_argument("--json", action="store_true")
    estimate.set_defaults(run=_cmd_estimate)

    prices = sub.add_parser("prices", help="show the rates a model is priced at")
    prices.add_argument("models", nargs="+")
    prices.add_argument("--json", action="store_true")
    prices.set_defaults(run=_cmd_prices)

    check = sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    check.set_defaults(run=_cmd_check)

    report = sub.add_parser("report", help="spend per budget, key, model and day")
    report.add_argument("--store", help="ledger URI, e.g. sqlite:///spend.db")
    report.add_argument("--budget")
    group = report.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true")
    group.add_argument("--csv", action="store_true")
    report.set_defaults(run=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.config and args.command != "check":
            from budgetguard._settings import configure

            configure(args.config)
        code: int = args.run(args)
        return code
    except (BudgetGuardError, OSError) as exc:
        print(f"budgetguard {args.command}: error: {exc}", file=sys.stderr)
        return 2
