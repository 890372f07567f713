"""The clock multi-process ledger tests share: real time moved to today's noon UTC.

Each test process and every worker it starts (given ``LEDGER_CLOCK_OFFSET``) reads the same
moved time, so no test straddles a midnight and calendar windows stay put.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

_NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0).timestamp()
#: Seconds to add to ``time.time()``: pass it to workers as ``LEDGER_CLOCK_OFFSET``.
OFFSET = _NOON - time.time()


def noon() -> float:
    return time.time() + OFFSET


class Clock:
    """Real time moved to noon, plus ``skip`` seconds when a test jumps ahead."""

    def __init__(self) -> None:
        self.skip = 0.0

    def __call__(self) -> float:
        return time.time() + OFFSET + self.skip
