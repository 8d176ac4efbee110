"""How figures are printed in the PDFs. Pure: values in, text out; no money is computed here.

- Money: `$13,633.24`, `-$9.29` (two decimals, thousands separators; the stored value, which
  is already rounded to the cent, is printed as it is).
- Uptime: floored to 4 decimals (DECISIONS 17a), so a missed SLA never prints as 99.99%.
- Counts: `1,234,567`; durations `Xd Yh Zm`, every part rounded down.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from fractions import Fraction

DOCUMENT_UPTIME_DECIMALS = 4
_CENT = Decimal("0.01")


def money(value: Decimal | str | int | None) -> str:
    """`$1,234.50`. A value with more than two places is refused, not rounded: the records
    store cents, and a PDF must print exactly what was issued."""
    if value is None or value == "":
        return "$0.00"
    amount = Decimal(str(value))
    if amount != amount.quantize(_CENT):
        raise ValueError(f"money {value!r} is not a whole number of cents; the PDF does not round")
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def money_credit(value: Decimal | str) -> str:
    """A credit as it reduces the bill: `-$9.29`, or `$0.00` when there is none."""
    amount = Decimal(str(value))
    return money(-amount) if amount > 0 else "$0.00"


def count(value: int | None) -> str:
    return f"{int(value or 0):,}"


def uptime(value: Decimal | str | None, *, decimals: int = DOCUMENT_UPTIME_DECIMALS) -> str:
    """A stored uptime percentage (6 places, floored) floored to 4 places: `99.7311%`."""
    if value is None or value == "":
        return "–"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return "–"
    floored = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)
    return f"{floored}%"


def share(part: int, whole: int, *, decimals: int = 2) -> str:
    """`part / whole` as a percentage, floored (a share is never overstated); `–` for 0/0."""
    if whole <= 0:
        return "–"
    scaled = Fraction(part * 100, whole) * 10**decimals
    floored = scaled.numerator // scaled.denominator
    return f"{Decimal(floored).scaleb(-decimals):.{decimals}f}%"


def change(current: int, before: int | None) -> str:
    """Change against an earlier figure, `+12.3%` / `-4.0%`; `new` when there was none before,
    `n/a` when the earlier month has no data at all."""
    if before is None:
        return "n/a"
    if before == 0:
        return "new" if current > 0 else "–"
    ratio = Fraction(current - before, before) * 1000
    tenths = ratio.numerator // ratio.denominator if ratio >= 0 else -((-ratio.numerator) // ratio.denominator)
    sign = "+" if tenths > 0 else ("-" if tenths < 0 else "±")
    return f"{sign}{abs(tenths) // 10}.{abs(tenths) % 10}%"


def duration(seconds: int) -> str:
    """`2d 3h 4m`, `1h 0m`, `4m`, `0m`; every part rounded down (a 59 s outage is `0m`)."""
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    if seconds and not minutes:
        return f"{seconds}s"
    return f"{minutes}m"


def month_title(month: date) -> str:
    return f"{month:%B %Y}"


def period(month: date, month_seconds: int) -> str:
    """`1 March 2025 – 31 March 2025 (UTC)`."""
    last_day = month.toordinal() + month_seconds // 86400 - 1
    return f"{month.day} {month:%B %Y} – {date.fromordinal(last_day):%-d %B %Y} (UTC)"


def timestamp(moment: datetime | str | None, *, seconds: bool = False) -> str:
    """`2025-03-07 14:03 UTC`, or `2025-03-07 14:03:27 UTC` with `seconds`."""
    if moment is None or moment == "":
        return "–"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M{':%S' if seconds else ''}} UTC"


def duration_exact(seconds: int) -> str:
    """`duration` with the seconds too (`18m 12s`, `1h 0m 5s`; `10m` when there are none):
    an outage's start and end are printed to the second, and so is its length."""
    seconds = max(int(seconds), 0)
    text = duration(seconds)
    return f"{text} {seconds % 60}s" if seconds >= 60 and seconds % 60 else text


def unbroken(text: str) -> str:
    """`text` with its spaces made non-breaking: a figure like `5h 7m` never wraps inside."""
    return text.replace(" ", "\u00a0")


def month_year(moment: datetime | None) -> str:
    return "–" if moment is None else f"{moment.astimezone(UTC):%b %Y}"


def resource(value: Decimal) -> str:
    """A resource figure without padding zeros, with separators: `4,672`, `0.5`."""
    normal = Decimal(value).normalize()
    if normal == normal.to_integral():
        return f"{int(normal):,}"
    return f"{normal:,f}"
