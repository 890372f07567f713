"""SpendRecord <-> flat text fields, shared by the persistent backends (SQLite columns, Redis streams).

Money is stored as the exact Decimal text, never a float, so a record reads back equal to the
one written. Times use ``repr(float)``, which round-trips exactly.
"""

from __future__ import annotations

import json
from dataclasses import fields
from decimal import Decimal

from budgetguard._ledger._base import SpendRecord
from budgetguard._usage import Usage

__all__ = [
    "RECORD_FIELDS",
    "USAGE_INT_FIELDS",
    "record_field_pairs",
    "record_from_fields",
    "record_to_fields",
]

USAGE_INT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(Usage) if f.name not in ("cost_usd", "unpriced_models")
)
_TEXT_FIELDS = ("budget", "scope_path", "model", "endpoint", "price_source")
RECORD_FIELDS: tuple[str, ...] = (
    "time",
    "budget",
    "key",
    "scope_path",
    "model",
    "endpoint",
    *USAGE_INT_FIELDS,
    "cost_usd",
    "reserved_usd",
    "estimated",
    "price_source",
    "request_id",
    "extra",
)


def record_to_fields(record: SpendRecord) -> dict[str, str | None]:
    """The record as text fields (``None`` for an absent key or request id)."""
    out: dict[str, str | None] = {"time": repr(float(record.time))}
    for name in _TEXT_FIELDS:
        out[name] = str(getattr(record, name))
    out["key"] = record.key
    out["request_id"] = record.request_id
    for name in USAGE_INT_FIELDS:
        out[name] = str(getattr(record.usage, name))
    out["cost_usd"] = str(record.usage.cost_usd)
    out["reserved_usd"] = str(record.reserved_usd)
    out["estimated"] = "1" if record.estimated else "0"
    out["extra"] = json.dumps(record.extra, sort_keys=True, separators=(",", ":"))
    return {name: out[name] for name in RECORD_FIELDS}


def record_field_pairs(record: SpendRecord, at: float) -> list[str]:
    """``record_to_fields(record)`` with the time ``at``, flattened to name, value, name, value, ...
    in ``RECORD_FIELDS`` order, absent values left out (the shape of a stream entry). Built
    directly: a leasing ledger writes many records at a time."""
    usage = record.usage
    out = ["time", repr(float(at)), "budget", str(record.budget)]
    if record.key is not None:
        out += ("key", record.key)
    out += (
        "scope_path",
        str(record.scope_path),
        "model",
        str(record.model),
        "endpoint",
        str(record.endpoint),
    )
    for name in USAGE_INT_FIELDS:
        out += (name, str(getattr(usage, name)))
    out += (
        "cost_usd",
        str(usage.cost_usd),
        "reserved_usd",
        str(record.reserved_usd),
        "estimated",
        "1" if record.estimated else "0",
        "price_source",
        str(record.price_source),
    )
    if record.request_id is not None:
        out += ("request_id", record.request_id)
    out += (
        "extra",
        json.dumps(record.extra, sort_keys=True, separators=(",", ":")) if record.extra else "{}",
    )
    return out


def record_from_fields(data: dict[str, str | None]) -> SpendRecord:
    """Inverse of :func:`record_to_fields`."""

    def text(name: str) -> str:
        value = data.get(name)
        return "" if value is None else value

    counts = {name: int(text(name) or "0") for name in USAGE_INT_FIELDS}
    # A record is one call: if it was unpriced, its model is the unpriced one.
    unpriced = frozenset((text("model"),)) if counts["unpriced_requests"] else frozenset()
    usage = Usage(cost_usd=Decimal(text("cost_usd") or "0"), unpriced_models=unpriced, **counts)
    extra = json.loads(text("extra") or "{}")
    return SpendRecord(
        time=float(text("time")),
        budget=text("budget"),
        key=data.get("key"),
        scope_path=text("scope_path"),
        model=text("model"),
        endpoint=text("endpoint"),
        usage=usage,
        reserved_usd=Decimal(text("reserved_usd") or "0"),
        estimated=text("estimated") == "1",
        price_source=text("price_source"),
        request_id=data.get("request_id"),
        extra={str(k): str(v) for k, v in extra.items()},
    )
