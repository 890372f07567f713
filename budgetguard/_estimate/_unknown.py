"""Best effort for well-formed content the estimator does not know (new part or item types).

The item is counted as its compact JSON text, which over-counts structure a little and so
errs on the safe side, and the estimate is marked inexact with the reason.
"""

from __future__ import annotations

import json
from typing import Any

from budgetguard._estimate._result import Tally

__all__ = ["unknown_json"]


def unknown_json(item: Any, tally: Tally, what: str) -> str:
    """The text to count for an unknown item; notes ``what`` as the reason it is inexact."""
    tally.inexact(f"{what} is not known to the estimator: counted as its JSON text")
    try:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(item)
