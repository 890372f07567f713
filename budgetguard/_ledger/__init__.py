"""Ledger backends behind one interface, chosen by URI (``memory://``, ``sqlite:///path``, ``redis://``)."""

from budgetguard._ledger._base import (
    PICOS_PER_USD,
    Amount,
    Hold,
    Ledger,
    LimitKind,
    Limits,
    Refused,
    Snapshot,
    SpendRecord,
    Window,
    picos_to_usd,
    usd_to_picos,
)
from budgetguard._ledger._memory import MemoryLedger

__all__ = [
    "PICOS_PER_USD",
    "Amount",
    "Hold",
    "Ledger",
    "LimitKind",
    "Limits",
    "MemoryLedger",
    "Refused",
    "Snapshot",
    "SpendRecord",
    "Window",
    "picos_to_usd",
    "usd_to_picos",
]
