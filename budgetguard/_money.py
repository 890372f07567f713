"""Exact dollar amounts as integers: ``units`` of ``10**exponent`` dollars.

Prices are compiled to integer units per token (``budgetguard._pricing``), so one call's cost
is an integer sum; running totals add those integers and become a ``Decimal`` only when
someone reads them. Ledgers count whole picodollars (10**-12 USD). Every conversion here is
exact whatever the caller's decimal context (none uses it).
"""

from __future__ import annotations

from decimal import Context, Decimal
from typing import Final

__all__ = ["PICOS_PER_USD", "add", "picos_to_usd", "to_picos", "to_usd", "usd_to_picos"]

PICOS_PER_USD: Final = 10**12
_PICO_EXPONENT: Final = -12
_ZERO = Decimal(0)
# Scaling an exact integer by a power of ten needs no rounding at this precision.
_EXACT = Context(prec=200)


def to_usd(units: int, exponent: int) -> Decimal:
    """``units * 10**exponent`` dollars as a Decimal, trailing zeros dropped (no E+ notation)."""
    if units == 0:
        return _ZERO
    if exponent >= 0:
        return Decimal(units * 10**exponent)
    while exponent < 0 and units % 10 == 0:
        units //= 10
        exponent += 1
    return Decimal(units).scaleb(exponent, _EXACT)


def to_picos(units: int, exponent: int) -> int:
    """``units * 10**exponent`` dollars in whole picodollars, rounded up (a reservation or a
    charge is never short by a fraction of a picodollar)."""
    shift = exponent - _PICO_EXPONENT
    scale: int = 10 ** abs(shift)
    return units * scale if shift >= 0 else -(-units // scale)


def add(units: int, exponent: int, other_units: int, other_exponent: int) -> tuple[int, int]:
    """The exact sum of two amounts, in the finer of their two exponents."""
    if exponent == other_exponent:  # the usual case: one model's calls
        return units + other_units, exponent
    if exponent < other_exponent:
        return units + other_units * 10 ** (other_exponent - exponent), exponent
    return units * 10 ** (exponent - other_exponent) + other_units, other_exponent


def usd_to_picos(usd: Decimal) -> int:
    """Dollars to whole picodollars, rounded up so a reservation is never short."""
    numerator, denominator = usd.as_integer_ratio()
    return -(-numerator * PICOS_PER_USD // denominator)


def picos_to_usd(picos: int) -> Decimal:
    return to_usd(picos, _PICO_EXPONENT)
