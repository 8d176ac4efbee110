"""How the PDFs print figures (pure), and how text is split between the bundled fonts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.pdf import formatting as fmt
from billing.pdf.fonts import FALLBACK, font_runs, text_html


def test_it_prints_money_with_separators_and_two_decimals() -> None:
    assert fmt.money(Decimal("13633.24")) == "$13,633.24"
    assert fmt.money(Decimal("109550.98")) == "$109,550.98"
    assert fmt.money(Decimal("-9.29")) == "-$9.29"
    assert fmt.money("0.00") == "$0.00" and fmt.money(Decimal("5")) == "$5.00"
    assert fmt.money_credit(Decimal("9.29")) == "-$9.29" and fmt.money_credit(Decimal("0.00")) == "$0.00"


def test_it_refuses_to_round_money() -> None:
    """The PDF prints stored cents; a value with a third decimal is a bug upstream, not a
    rounding job here."""
    with pytest.raises(ValueError, match="not a whole number of cents"):
        fmt.money(Decimal("3457.2056736"))


def test_it_floors_uptime_to_four_decimals() -> None:
    """99.989999 (a missed SLA) must not print as 99.99%; 2h down in 744h = 99.731182…%."""
    assert fmt.uptime(Decimal("99.989999")) == "99.9899%"
    assert fmt.uptime(Decimal("99.731182")) == "99.7311%"
    assert fmt.uptime(Decimal("100.000000")) == "100.0000%"
    assert fmt.uptime("") == "–"


def test_it_prints_shares_changes_and_durations() -> None:
    """Share 2/3 = 66.666…% floors to 66.66%; change 1000 vs 800 = +25.0%, vs 2000 = -50.0%,
    vs 3 = +33233.3%; 90,000 s = 1d 1h 0m; 59 s = 59s; 3,660 s = 1h 1m."""
    assert fmt.share(2, 3) == "66.66%" and fmt.share(1, 0) == "–"
    assert fmt.change(1000, 800) == "+25.0%" and fmt.change(1000, 2000) == "-50.0%"
    assert fmt.change(1000, 3) == "+33233.3%" and fmt.change(5, 5) == "±0.0%"
    assert fmt.change(5, 0) == "new" and fmt.change(5, None) == "n/a"
    assert fmt.change(2, 3) == "-33.3%"  # -33.33… truncated toward zero, as the positive side
    assert fmt.duration(90_000) == "1d 1h 0m" and fmt.duration(59) == "59s" and fmt.duration(3660) == "1h 1m"
    assert fmt.duration(0) == "0m"
    assert fmt.period(date(2025, 2, 1), 28 * 86400) == "1 February 2025 – 28 February 2025 (UTC)"
    assert fmt.resource(Decimal("4672.000000")) == "4,672" and fmt.resource(Decimal("0.500000")) == "0.5"


def test_it_sets_cjk_runs_in_the_fallback_font_and_escapes_text() -> None:
    assert font_runs("Zürich Nodes 東京 Łódź") == [("Zürich Nodes ", False), ("東京", True), (" Łódź", False)]
    html = str(text_html("<b>東京</b> & Москва"))
    assert html == f'&lt;b&gt;<span style="font-family: {FALLBACK}">東京</span>&lt;/b&gt; &amp; Москва'


def test_it_prints_an_outage_to_the_second() -> None:
    """An outage 14:01:07 → 14:19:19 lasts 1,092 s = 18m 12s; 600 s is `10m`, 3,605 s is
    `1h 0m 5s`; the statement's total downtime never wraps inside (`5h 7m` with a no-break
    space)."""
    assert fmt.timestamp("2026-11-24T14:01:07Z", seconds=True) == "2026-11-24 14:01:07 UTC"
    assert fmt.timestamp("2026-11-24T14:01:07Z") == "2026-11-24 14:01 UTC"
    assert [fmt.duration_exact(s) for s in (1092, 600, 3605, 59, 0)] == ["18m 12s", "10m", "1h 0m 5s", "59s", "0m"]
    assert fmt.unbroken(fmt.duration(18_420)) == "5h\u00a07m"
