"""How close pre-flight prompt estimates come to what the API billed, on real recordings.

Scores ``../shared/data/openai_recorded_usage.jsonl`` (or ``--data PATH``) and prints, per
category and per model family: requests, exact-match rate, mean signed error, mean absolute
error, worst error, and how often the upper bound (with the default safety margin) was
below the bill. Self-contained requests come first; excluded ones (hidden context,
launch-period drift, recorder-altered text; see tests/test_estimate_accuracy.py) are
reported apart. ``--as-sent`` scores the model named in the body instead of the one that
answered (shows what moving aliases like ``gpt-3.5-turbo`` cost).

    .venv/bin/python benchmarks/estimate_accuracy.py [--as-sent] [--worst 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_estimate_accuracy import DATA, Scored, load_records, score

_HEADER = f"{'':46} {'n':>4} {'exact':>7} {'mean':>8} {'MAE':>8} {'max':>8} {'upper<bill':>10}"


def _line(label: str, rows: list[Scored]) -> str:
    errors = [r.error for r in rows]
    exact = sum(1 for e in errors if e == 0) / len(errors)
    worst = max(errors, key=abs)
    under = sum(1 for r in rows if r.under_upper)
    return (
        f"{label:46} {len(rows):>4} {exact:>7.1%} {statistics.fmean(errors):>+8.1f} "
        f"{statistics.fmean(abs(e) for e in errors):>8.1f} {worst:>+8d} {under:>10d}"
    )


def _table(title: str, scored: list[Scored], key: Callable[[Scored], Iterable[str]]) -> None:
    print(f"\n{title}\n{_HEADER}")
    groups: dict[str, list[Scored]] = defaultdict(list)
    for row in scored:
        for name in key(row):
            suffix = "" if row.excluded is None else f" [{row.excluded}]"
            groups[name + suffix].append(row)
    for name in sorted(groups, key=lambda n: ("[" in n, n)):
        print(_line(name, groups[name]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--as-sent", action="store_true", help="score the body's model, not the answering one"
    )
    parser.add_argument("--worst", type=int, default=0, help="also list the N worst self-contained requests")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"no recordings at {args.data}")
    records = load_records(args.data)
    scored = score(records, served_model=not args.as_sent)
    kept = [s for s in scored if s.excluded is None]
    print(f"{len(scored)} recordings from {args.data} ({'as sent' if args.as_sent else 'as served'})")
    _table("by category", scored, lambda s: s.categories)
    _table("by model family", scored, lambda s: (s.family,))
    print(f"\n{_line('all self-contained', kept)}")
    print(_line("everything", scored))
    if args.worst:
        print(f"\nworst {args.worst} self-contained:")
        for row in sorted(kept, key=lambda r: -abs(r.error))[: args.worst]:
            model = records[row.index].get("response_model") or records[row.index]["request"].get(
                "model", "?"
            )
            est = row.estimate.prompt_tokens
            print(f"  #{row.index:<4} {model:30} billed {row.billed:>7} estimated {est:>7} ({row.error:+d})")


if __name__ == "__main__":
    main()
