"""``import budgetguard`` next to ``import openai``: fresh interpreters, side by side.

.venv/bin/python benchmarks/import_time.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CASES = {
    "python (nothing)": "pass",
    "import openai": "import openai",
    "import budgetguard": "import budgetguard",
    "import openai, budgetguard": "import openai, budgetguard",
}


def _one(code: str) -> float:
    script = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    return float(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):  # interleaved so disk cache and CPU noise hit all cases alike
        for name, code in CASES.items():
            samples[name].append(_one(code))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"import time, median of {args.runs} fresh interpreters")
    for name, value in medians.items():
        print(f"  {name:<28} {value * 1000:7.1f} ms")
    extra = medians["import openai, budgetguard"] - medians["import openai"]
    print(f"  budgetguard on top of openai: {extra * 1000:+.1f} ms")


if __name__ == "__main__":
    main()
