"""GET /api/billing/breakdown and /api/billing/summary (api-contract §2.15/§2.16, DECISIONS 19),
on MariaDB with the real config and statements issued by the real engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.test import Client

from billing.selectors import BillingSummary
from metrics.models import MemberEvent
from tests.billing.api_support import (  # noqa: F401
    POLKADOT_HOST,
    billing_files,
    body_of,
    issued_march,
    real_config,
)
from tests.billing.conftest import outage_create
from tests.billing.pdf_support import utc
from tests.collator.api_fixtures import api  # noqa: F401

BREAKDOWN = "/api/billing/breakdown"
SUMMARY = "/api/billing/summary"
ACTIVE = ["Amforc", "Dwellir", "Gatotech", "Stake Plus", "Turboflakes"]
MEMBER_KEYS = ["name", "level", "services", "total_base_cost", "total_billed", "total_credits", "meets_sla"]
SERVICE_KEYS = ["name", "base_cost", "uptime_percentage", "billed_cost", "credits", "meets_sla"]
# The downtime/events object (§2.6), then the counted part of the month.
EVENT_KEYS = [
    "id", "member_name", "check_type", "check_name", "domain_name", "endpoint", "start_time", "end_time",
    "duration", "error", "is_ipv6", "status", "counted_start", "counted_end", "counted_seconds",
]  # fmt: skip
# Stake Plus (North America) per-service bases, reports §10.3: they add up to 13633.24.
STAKE_PLUS_BASES = {
    "Paseo": 660.56, "Asset-Hub-Paseo": 204.50, "ETH-Asset-Hub-Paseo": 22.40, "Bridge-Hub-Paseo": 158.74,
    "Collectives-Paseo": 158.74, "Coretime-Paseo": 158.74, "People-Paseo": 158.74, "Kusama": 4628.82,
    "Asset-Hub-Kusama": 740.54, "ETH-Asset-Hub-Kusama": 44.81, "Bridge-Hub-Kusama": 262.25,
    "Coretime-Kusama": 214.62, "Encointer-Kusama": 214.62, "People-Kusama": 208.24, "Polkadot": 3457.21,
    "Asset-Hub-Polkadot": 773.54, "ETH-Asset-Hub-Polkadot": 44.81, "Bridge-Hub-Polkadot": 239.37,
    "Collectives-Polkadot": 191.74, "Coretime-Polkadot": 183.49, "People-Polkadot": 191.74, "Hydration": 715.02,
}  # fmt: skip


def _types_of_member(member: dict[str, Any]) -> None:
    assert list(member) == MEMBER_KEYS
    assert isinstance(member["name"], str) and isinstance(member["level"], int)
    assert isinstance(member["meets_sla"], bool)
    for key in ("total_base_cost", "total_billed", "total_credits"):
        assert isinstance(member[key], float), key
    for service in member["services"]:
        assert list(service)[:6] == SERVICE_KEYS
        assert isinstance(service["name"], str) and isinstance(service["meets_sla"], bool)
        for key in ("base_cost", "uptime_percentage", "billed_cost", "credits"):
            assert isinstance(service[key], float), key


class TestIssuedMonth:
    """March 2025, issued: served from the stored statements."""

    def test_it_serves_stake_plus_from_its_statement(self, api: Client, issued_march: Path) -> None:  # noqa: F811
        """Stake Plus: 22 services, base 13633.24 (reports §10.3). Polkadot's own domain was down
        2 h of March's 744 h: uptime (744 − 2) / 744 = 99.7311827…% → 99.731182 (6 places,
        floored); credit on the rounded base 3457.21 × 7200 / 2,678,400 = 9.2936… → 9.29;
        billed 3457.21 − 9.29 = 3447.92. Every other service: 100%, no credit. Member totals:
        credits 9.29, billed 13633.24 − 9.29 = 13623.95, SLA missed."""
        body = body_of(api, BREAKDOWN, year="2025", month="3", member="Stake Plus")
        assert list(body) == ["members", "month", "total_base_cost", "total_billed", "total_credits"]
        assert body["month"] == "2025-03"
        (member,) = body["members"]
        _types_of_member(member)
        assert (member["name"], member["level"], member["meets_sla"]) == ("Stake Plus", 6, False)
        assert (member["total_base_cost"], member["total_credits"], member["total_billed"]) == (
            13633.24,
            9.29,
            13623.95,
        )
        assert (body["total_base_cost"], body["total_credits"], body["total_billed"]) == (13633.24, 9.29, 13623.95)
        services = {service["name"]: service for service in member["services"]}
        assert [s["name"] for s in member["services"]] == sorted(STAKE_PLUS_BASES)
        assert {name: s["base_cost"] for name, s in services.items()} == STAKE_PLUS_BASES
        assert services["Polkadot"] == {
            "name": "Polkadot",
            "base_cost": 3457.21,
            "uptime_percentage": 99.731182,
            "billed_cost": 3447.92,
            "credits": 9.29,
            "meets_sla": False,
        }
        others = [s for name, s in services.items() if name != "Polkadot"]
        assert all(s["uptime_percentage"] == 100.0 and s["credits"] == 0.0 and s["meets_sla"] for s in others)
        assert all(s["billed_cost"] == s["base_cost"] for s in others)
        assert all("downtime_events" not in s for s in member["services"])

    def test_it_totals_the_five_active_members(self, api: Client, issued_march: Path) -> None:  # noqa: F811
        """The overview's members: the 5 active ones (Rotko Networks and RadiumBlock are
        inactive). Bases (Σ of rounded lines, reports §10.3): Stake Plus 13633.24, Amforc and
        Turboflakes 13819.99 each, Gatotech and Dwellir 17069.44 each → 75412.10.
        Credits 9.29 (Stake Plus only) → billed 75402.81."""
        body = body_of(api, BREAKDOWN, year="2025", month="03")
        assert [m["name"] for m in body["members"]] == ACTIVE
        for member in body["members"]:
            _types_of_member(member)
            assert len(member["services"]) == 22
        bases = {m["name"]: m["total_base_cost"] for m in body["members"]}
        assert bases == {
            "Amforc": 13819.99,
            "Dwellir": 17069.44,
            "Gatotech": 17069.44,
            "Stake Plus": 13633.24,
            "Turboflakes": 13819.99,
        }
        assert (body["total_base_cost"], body["total_credits"], body["total_billed"]) == (75412.10, 9.29, 75402.81)
        assert [m["meets_sla"] for m in body["members"]] == [True, True, True, False, True]

    def test_it_lists_counted_outages_when_asked_and_empty_lists_otherwise(
        self,
        api: Client,  # noqa: F811
        issued_march: Path,  # noqa: F811
    ) -> None:
        """include_downtime=true: Polkadot carries the 2 h outage (7200 s counted), as the §2.6
        event object with its `duration` and `error`, then the counted part; the other 21
        services carry [] (quirk Q14), never a missing key."""
        (row,) = MemberEvent.objects.all()
        MemberEvent.objects.filter(pk=row.pk).update(error="Syncing or not enough peers")
        body = body_of(api, BREAKDOWN, year="2025", month="3", member="Stake Plus", include_downtime="true")
        services = {s["name"]: s for s in body["members"][0]["services"]}
        (event,) = services["Polkadot"]["downtime_events"]
        assert event == {
            "id": row.pk,
            "member_name": "Stake Plus",
            "check_type": "domain",
            "check_name": "wss",
            "domain_name": POLKADOT_HOST,
            "endpoint": "wss://polkadot.dotters.network",
            "start_time": "2025-03-10T10:00:00Z",
            "end_time": "2025-03-10T12:00:00Z",
            "duration": "2h 0m",
            "error": "Syncing or not enough peers",
            "is_ipv6": False,
            "status": "resolved",
            "counted_start": "2025-03-10T10:00:00Z",
            "counted_end": "2025-03-10T12:00:00Z",
            "counted_seconds": 7200,
        }
        assert list(event) == EVENT_KEYS
        assert all(s["downtime_events"] == [] for name, s in services.items() if name != "Polkadot")
        # Only the exact value `true` asks for them.
        plain = body_of(api, BREAKDOWN, year="2025", month="3", member="Stake Plus", include_downtime="True")
        assert all("downtime_events" not in s for s in plain["members"][0]["services"])

    def test_it_answers_an_unknown_member_with_200_and_no_members(
        self,
        api: Client,  # noqa: F811
        issued_march: Path,  # noqa: F811
    ) -> None:
        """The member is the exact, case-sensitive key: `stake plus` is nobody (DECISIONS 19)."""
        for member in ("Nobody", "stake plus"):
            body = body_of(api, BREAKDOWN, year="2025", month="3", member=member)
            assert body == {
                "members": [],
                "month": "2025-03",
                "total_base_cost": 0.0,
                "total_billed": 0.0,
                "total_credits": 0.0,
            }


class TestMonthParameters:
    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"month": "13", "year": "2025"}, "Invalid month"),
            ({"month": "0", "year": "2025"}, "Invalid month"),
            ({"month": "3", "year": "1999"}, "Invalid year"),
            ({"month": "3", "year": "2101"}, "Invalid year"),
            ({"month": "13", "year": "1999"}, "Invalid month"),  # month is checked first
            ({"month": "3x", "year": "2025"}, "Invalid month"),
            ({"month": " 3", "year": "2025"}, "Invalid month"),
            ({"month": "\u0663", "year": "2025"}, "Invalid month"),  # an Arabic-Indic 3
            ({"month": "3", "year": "2_025"}, "Invalid year"),
        ],
    )
    def test_it_answers_400_for_a_bad_month_or_year(
        self,
        api: Client,  # noqa: F811
        params: dict[str, str],
        message: str,
    ) -> None:
        assert body_of(api, BREAKDOWN, expect=400, **params) == {"error": message}

    def test_it_defaults_a_missing_part_to_the_previous_month(self, api: Client, real_config: None) -> None:  # noqa: F811
        """On 2025-03-31 (where the reference's "today minus a month" gives March again, Q12)
        the previous month is February 2025: nothing given → 2025-02; only month=1 → 2025-01;
        only year=2024 → 2024-02. `+3` is a valid month (optional sign)."""
        with time_machine.travel(utc(2025, 3, 31, 12), tick=False):
            assert body_of(api, BREAKDOWN)["month"] == "2025-02"
            assert body_of(api, BREAKDOWN, month="", year="")["month"] == "2025-02"
            assert body_of(api, BREAKDOWN, month="1")["month"] == "2025-01"
            assert body_of(api, BREAKDOWN, year="2024")["month"] == "2024-02"
            assert body_of(api, BREAKDOWN, month="+3", year="2025")["month"] == "2025-03"

    def test_it_answers_zeros_and_empty_lists_without_any_config(self, api: Client) -> None:  # noqa: F811
        """No config synced yet: 200 with zeros, for breakdown and summary alike (DECISIONS 19)."""
        assert body_of(api, BREAKDOWN, year="2025", month="3", member="Stake Plus", include_downtime="true") == {
            "members": [],
            "month": "2025-03",
            "total_base_cost": 0.0,
            "total_billed": 0.0,
            "total_credits": 0.0,
        }
        assert body_of(api, SUMMARY) == {
            "current_month_credits": 0.0,
            "current_month_sla_violations": 0,
            "last_refresh": "0001-01-01T00:00:00Z",
            "service_distribution": {},
            "total_base_cost_monthly": 0.0,
            "total_members": 0,
            "total_services": 0,
            "unique_services": 0,
        }


class TestCurrentMonth:
    """15 April 2025 12:00 UTC, a site outage of Stake Plus open since 11:00: computed live,
    counted up to now (1 h, DECISIONS 11)."""

    @pytest.fixture
    def open_outage(self, real_config: None, billing_files: Path) -> None:  # noqa: F811
        outage_create(member_name="Stake Plus", start_time=utc(2025, 4, 15, 11), end_time=None)

    def test_it_computes_the_month_to_date(self, api: Client, open_outage: None) -> None:  # noqa: F811
        """April has 2,592,000 s; 1 h down → uptime 1 − 3600/2,592,000 = 99.8611111…% →
        99.861111, below 99.99% on all 22 services (a site outage counts against each). Each
        credit is its rounded base / 720, to the cent: Polkadot 3457.21 / 720 = 4.8016… → 4.80,
        billed 3452.41; Kusama 4628.82 / 720 = 6.429… → 6.43. The 22 credits add up to 18.92
        (0.92 + 0.28 + 0.03 + 4 × 0.22 + 6.43 + 1.03 + 0.06 + 0.36 + 2 × 0.30 + 0.29 + 4.80
        + 1.07 + 0.06 + 0.33 + 2 × 0.27 + 0.25 + 0.99); the reference's unrounded 18.93 is not
        what a statement can show (DECISIONS 14)."""
        with time_machine.travel(utc(2025, 4, 15, 12), tick=False):
            body = body_of(api, BREAKDOWN, year="2025", month="4", member="Stake Plus", include_downtime="true")
        (member,) = body["members"]
        _types_of_member(member)
        services = {s["name"]: s for s in member["services"]}
        assert len(services) == 22
        assert {s["uptime_percentage"] for s in services.values()} == {99.861111}
        assert not any(s["meets_sla"] for s in services.values())
        assert (services["Polkadot"]["credits"], services["Polkadot"]["billed_cost"]) == (4.80, 3452.41)
        assert services["Kusama"]["credits"] == 6.43
        assert (member["total_base_cost"], member["total_credits"], member["total_billed"]) == (
            13633.24,
            18.92,
            13614.32,
        )
        (event,) = services["Hydration"]["downtime_events"]
        (row,) = MemberEvent.objects.all()
        # Open: no end_time (Q14); the duration is the counted hour, 11:00 to now.
        assert event == {
            "id": row.pk,
            "member_name": "Stake Plus",
            "check_type": "site",
            "check_name": "ping",
            "domain_name": "",
            "endpoint": "",
            "start_time": "2025-04-15T11:00:00Z",
            "duration": "1h 0m",
            "is_ipv6": False,
            "status": "ongoing",
            "counted_start": "2025-04-15T11:00:00Z",
            "counted_end": "2025-04-15T12:00:00Z",
            "counted_seconds": 3600,
        }
        assert services["Polkadot"]["downtime_events"] == [event]  # a site outage counts for every service

    def test_it_summarises_the_current_month(self, api: Client, open_outage: None) -> None:  # noqa: F811
        """5 billed members × 22 services = 110 pairs, 22 distinct services each paid by 5;
        bases 75412.10; this month's credits are Stake Plus's 18.92 (above), and its 22 lines
        are the violations. last_refresh: when the config in force was applied."""
        with time_machine.travel(utc(2025, 4, 15, 12), tick=False):
            body = body_of(api, SUMMARY)
        assert body == {
            "current_month_credits": 18.92,
            "current_month_sla_violations": 22,
            "last_refresh": "2025-02-20T00:00:00Z",
            "service_distribution": dict.fromkeys(sorted(STAKE_PLUS_BASES), 5),
            "total_base_cost_monthly": 75412.10,
            "total_members": 5,
            "total_services": 110,
            "unique_services": 22,
        }


@pytest.mark.parametrize(
    ("applied_at", "text"),
    [
        (datetime(2025, 2, 20, 0, 0, 0, 123400, tzinfo=UTC), "2025-02-20T00:00:00.1234Z"),
        (datetime(2025, 2, 20, 1, 0, 0, 5, tzinfo=timezone(timedelta(hours=1))), "2025-02-20T00:00:00.000005Z"),
        (datetime(2025, 2, 20, tzinfo=UTC), "2025-02-20T00:00:00Z"),
        (None, "0001-01-01T00:00:00Z"),
    ],
)
def test_it_writes_last_refresh_with_a_fraction_only_when_there_is_one(applied_at: datetime | None, text: str) -> None:
    """api-contract §1.5: RFC 3339 UTC with `Z`, the fraction only when non-zero, trailing zeros trimmed."""
    summary = BillingSummary(
        total_members=0,
        total_services=0,
        unique_services=0,
        total_base_cost_monthly=Decimal(0),
        current_month_credits=Decimal(0),
        current_month_sla_violations=0,
        service_distribution={},
        last_refresh=applied_at,
    )
    assert summary.as_api()["last_refresh"] == text
