"""Money and percentage rounding (DECISIONS 14, 17a). Pure: Decimal and Fraction in, Decimal out."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from fractions import Fraction

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def money_round(amount: Decimal | Fraction | int) -> Decimal:
    """Round half-up to the cent. A Fraction is divided exactly first, so 224/93 → 2.41."""
    if isinstance(amount, Fraction):
        # Scale to cents and round the exact ratio, never a float or a truncated Decimal.
        # Half-up means away from zero at a tie, as ROUND_HALF_UP does for Decimal.
        sign = -1 if amount < 0 else 1
        cents, remainder = divmod(abs(amount.numerator) * 100, amount.denominator)
        if remainder * 2 >= amount.denominator:
            cents += 1
        return (Decimal(sign * cents) / 100).quantize(CENT)
    return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


def money_sum(amounts: Iterable[Decimal]) -> Decimal:
    """Sum already-rounded amounts; the result is exact and keeps two places."""
    return sum(amounts, ZERO).quantize(CENT)


def percent_floor(ratio: Fraction, *, decimals: int) -> Decimal:
    """A ratio (0..1) as a percentage floored to `decimals` places.

    Floored, never rounded up, so that 99.98999…% shows as 99.9899 and a missed SLA can
    never print as 99.99% (DECISIONS 17a).
    """
    scaled = ratio * 100 * 10**decimals
    floored = scaled.numerator // scaled.denominator
    return Decimal(floored).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)
