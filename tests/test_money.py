"""Money as integers: ``units`` of ``10**exponent`` dollars, exact in every conversion."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest

from budgetguard._ledger import Amount
from budgetguard._money import add, picos_to_usd, to_picos, to_usd, usd_to_picos
from budgetguard._usage import TokenCounts, UsageTotal


@pytest.mark.parametrize(
    ("units", "exponent", "usd"),
    [(0, -9, "0"), (28200, -9, "0.0000282"), (7, 0, "7"), (15, 3, "15000"), (-5, -2, "-0.05")],
)
def test_an_amount_reads_as_the_decimal_it_denotes_without_exponent_notation(
    units: int, exponent: int, usd: str
) -> None:
    assert to_usd(units, exponent) == Decimal(usd)
    assert "E" not in str(to_usd(units, exponent))


def test_picodollars_are_rounded_up_so_a_charge_is_never_short() -> None:
    assert to_picos(28200, -9) == 28_200_000
    assert to_picos(1, -13) == 1  # a tenth of a picodollar is one picodollar
    assert to_picos(10, -13) == 1
    assert to_picos(11, -13) == 2
    assert to_picos(3, 2) == 300 * 10**12


def test_amounts_in_different_exponents_add_exactly_in_the_finer_one() -> None:
    assert add(5, -2, 3, -6) == (50003, -6)
    assert add(3, -6, 5, -2) == (50003, -6)
    assert add(1, -9, 2, -9) == (3, -9)


def test_conversions_ignore_the_callers_decimal_context() -> None:
    with decimal.localcontext(decimal.Context(prec=3, rounding=decimal.ROUND_DOWN)):
        assert to_usd(123456789, -12) == Decimal("0.000123456789")
        assert picos_to_usd(10**30 + 1) == Decimal("1000000000000000000.000000000001")
        assert usd_to_picos(Decimal("0.0000000000001")) == 1


def test_a_running_total_over_models_priced_in_different_exponents_is_exact() -> None:
    total = UsageTotal()
    total.add_request(TokenCounts(10, 1), 28200, -9, False, None)
    total.add_request(TokenCounts(5, 2), 3, -13, True, None)
    total.add_request(TokenCounts(7, 0), 0, 0, False, "mystery-model")
    usage = total.value()
    assert usage.cost_usd == Decimal("0.0000282") + Decimal("0.0000000000003")
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (22, 3, 3)
    assert usage.estimated_requests == 1
    assert (usage.unpriced_requests, usage.unpriced_models) == (1, frozenset({"mystery-model"}))


def test_ledger_amounts_add_and_subtract_field_by_field_and_cannot_be_changed() -> None:
    a, b = Amount(300, 20, 1), Amount(100, 5, 1)
    assert a + b == Amount(400, 25, 2)  # not the six-item tuple a tuple's + would make
    assert a - b == Amount(200, 15, 0)
    assert sum((a, b), Amount()) == Amount(400, 25, 2)
    assert Amount(2_500_000).usd == Decimal("0.0000025")
    assert a.get("usd") == 300 and a.get("tokens") == 20 and a.get("requests") == 1
    with pytest.raises(AttributeError):
        a.picos = 0  # type: ignore[misc]
