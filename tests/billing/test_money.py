from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from billing.money import money_round, money_sum, percent_floor


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal("3457.2056736"), Decimal("3457.21")),
        (Decimal("13633.1904812"), Decimal("13633.19")),
        (Decimal("0.005"), Decimal("0.01")),  # a tie rounds up, never to even
        (Decimal("0.015"), Decimal("0.02")),
        (Decimal("0.0049999"), Decimal("0.00")),
        (Fraction(224, 93), Decimal("2.41")),  # 2.408602…
        (Fraction(112, 93), Decimal("1.20")),  # 1.204301…
        (Fraction(1, 200), Decimal("0.01")),  # exactly 0.005: half-up
        (Fraction(-1, 200), Decimal("-0.01")),  # away from zero, like ROUND_HALF_UP
        (7, Decimal("7.00")),
    ],
)
def test_it_rounds_money_half_up_to_the_cent(amount: Decimal | Fraction | int, expected: Decimal) -> None:
    assert money_round(amount) == expected
    assert str(money_round(amount)) == str(expected)


def test_it_sums_rounded_amounts_exactly() -> None:
    assert money_sum([Decimal("0.10")] * 3) == Decimal("0.30")
    assert money_sum([]) == Decimal("0.00")


@pytest.mark.parametrize(
    ("ratio", "decimals", "expected"),
    [
        # 260 s down in a 30-day month: 2591740/2592000 = 0.99989969… → never shown as 99.99.
        (Fraction(2591740, 2592000), 4, "99.9899"),
        (Fraction(2591740, 2592000), 6, "99.989969"),
        (Fraction(2591741, 2592000), 4, "99.9900"),
        (Fraction(1), 4, "100.0000"),
        (Fraction(0), 2, "0.00"),
        (Fraction(2, 3), 2, "66.66"),  # floored, not 66.67
    ],
)
def test_it_floors_percentages_to_the_decimals_shown(ratio: Fraction, decimals: int, expected: str) -> None:
    assert str(percent_floor(ratio, decimals=decimals)) == expected
