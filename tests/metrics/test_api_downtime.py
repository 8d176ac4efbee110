"""/api/downtime/* and /api/members/stats against real rows (api-contract §2.6–2.8, §2.10).

The clock is frozen at 2025-03-02 12:00 UTC. The window is 1–2 March (48 h).

| row | member | type (stored) | start | end | in the window |
|---|---|---|---|---|---|
| site | Stake Plus | '1' | 1 Mar 10:00 | 1 Mar 12:00 (status 1) | 2 h |
| dom | Stake Plus | 'domain' (legacy) | 1 Mar 11:00 | 1 Mar 13:30 (status 1) | overlaps: merged 10:00–13:30 = 3.5 h |
| open | Amforc | '3' | 2 Mar 08:00 | open | to now: 4 h |
| early | Gatotech | '1' | 28 Feb 22:00 | 1 Mar 01:00 | 1 h of its 3 h |
| before | Gatotech | '1' | 20 Feb | 25 Feb | none |
| ghost | Dwellir | '1' | 1 Mar 05:00 | status 1, no end | not an outage (DECISIONS 2) |
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.test import Client

from members.config_files import NetworkConfig
from metrics.models import MemberEvent
from tests.collator.api_fixtures import add_event, add_usage, api, get_json, network_config, utc  # noqa: F401

RANGE = {"start": "2025-03-01", "end": "2025-03-02"}
NOW = "2025-03-02T12:00:00Z"


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(utc(NOW), tick=False):
        yield


@pytest.fixture
def events(network_config: NetworkConfig, frozen: None) -> dict[str, MemberEvent]:  # noqa: F811
    return {
        "site": add_event(
            check_type="1", start_time=utc("2025-03-01T10:00:00Z"), end_time=utc("2025-03-01T12:00:00Z"), status=1
        ),
        "dom": add_event(
            check_type="domain",
            check_name="wss",
            domain_name="polkadot.dotters.network",
            start_time=utc("2025-03-01T11:00:00Z"),
            end_time=utc("2025-03-01T13:30:00Z"),
            status=1,
        ),
        "open": add_event(
            member_name="Amforc",
            check_type="3",
            check_name="wss",
            domain_name="kusama.dotters.network",
            endpoint="wss://kusama.dotters.network",
            start_time=utc("2025-03-02T08:00:00Z"),
            error="no response",
        ),
        "early": add_event(
            member_name="Gatotech",
            start_time=utc("2025-02-28T22:00:00Z"),
            end_time=utc("2025-03-01T01:00:00Z"),
            status=1,
        ),
        "before": add_event(
            member_name="Gatotech",
            check_name="ping-old",
            start_time=utc("2025-02-20T00:00:00Z"),
            end_time=utc("2025-02-25T00:00:00Z"),
            status=1,
        ),
        "ghost": add_event(member_name="Dwellir", start_time=utc("2025-03-01T05:00:00Z"), status=1),
    }


def _ids(body: list[dict[str, Any]], events: dict[str, MemberEvent]) -> list[str]:
    names = {event.id: name for name, event in events.items()}
    return [names[item["id"]] for item in body]


class TestEvents:
    def test_it_lists_outages_newest_first_in_the_contract_shape(
        self,
        api: Client,  # noqa: F811
        events: dict[str, MemberEvent],
    ) -> None:
        body = get_json(api, "/api/downtime/events", **RANGE)
        assert _ids(body, events) == ["open", "dom", "site", "early"]
        assert body[0] == {
            "id": events["open"].id,
            "member_name": "Amforc",
            "check_type": "endpoint",
            "check_name": "wss",
            "domain_name": "kusama.dotters.network",
            "endpoint": "wss://kusama.dotters.network",
            "start_time": "2025-03-02T08:00:00Z",
            "duration": "4h 0m",
            "error": "no response",
            "is_ipv6": False,
            "status": "ongoing",
        }
        assert body[1] == {
            "id": events["dom"].id,
            "member_name": "Stake Plus",
            "check_type": "domain",
            "check_name": "wss",
            "domain_name": "polkadot.dotters.network",
            "start_time": "2025-03-01T11:00:00Z",
            "end_time": "2025-03-01T13:30:00Z",
            "duration": "2h 30m",
            "is_ipv6": False,
            "status": "resolved",
        }
        # The early outage keeps its whole duration (3 h), not the part inside the window.
        assert body[3]["duration"] == "3h 0m"
        assert body[3]["check_type"] == "site"

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"member": "Stake Plus"}, ["dom", "site"]),
            ({"check_type": "site"}, ["site", "early"]),
            ({"check_type": "1"}, ["site", "early"]),
            ({"check_type": "DOMAIN"}, ["dom"]),
            ({"status": "ongoing"}, ["open"]),
            ({"status": "resolved"}, ["dom", "site", "early"]),
            ({"domain": "polkadot.dotters.network"}, ["dom"]),
            # Kusama: site outages count for every service; the kusama endpoint is its own;
            # the polkadot domain outage is not Kusama's (DECISIONS 4).
            ({"service": "Kusama"}, ["open", "site", "early"]),
            ({"service": "Polkadot"}, ["dom", "site", "early"]),
        ],
    )
    def test_it_filters(
        self,
        api: Client,  # noqa: F811
        events: dict[str, MemberEvent],
        params: dict[str, str],
        expected: list[str],
    ) -> None:
        assert _ids(get_json(api, "/api/downtime/events", **params, **RANGE), events) == expected

    def test_it_filters_by_service_with_the_billing_matcher_at_its_edges(
        self,
        api: Client,  # noqa: F811
        events: dict[str, MemberEvent],
    ) -> None:
        """The service filter lists what billing counts against the service (billing/sla.py):
        a site outage whose row also names a domain still counts for every service, and a row
        of an unknown check type (`9`) with no host counts for none. An endpoint outage with
        an empty endpoint falls back to its domain's host."""
        edges = {
            "site_with_domain": add_event(
                check_type="site",
                domain_name="polkadot.dotters.network",
                start_time=utc("2025-03-02T09:00:00Z"),
                end_time=utc("2025-03-02T09:30:00Z"),
                status=1,
            ),
            "unknown_type": add_event(
                check_type="9", start_time=utc("2025-03-02T10:00:00Z"), end_time=utc("2025-03-02T10:05:00Z"), status=1
            ),
            "endpoint_without_url": add_event(
                member_name="Amforc",
                check_type="3",
                domain_name="Kusama.Dotters.Network",
                start_time=utc("2025-03-02T07:00:00Z"),
                end_time=utc("2025-03-02T07:10:00Z"),
                status=1,
            ),
        }
        rows = events | edges

        kusama = _ids(get_json(api, "/api/downtime/events", service="Kusama", **RANGE), rows)
        polkadot = _ids(get_json(api, "/api/downtime/events", service="Polkadot", **RANGE), rows)
        unknown = _ids(get_json(api, "/api/downtime/events", service="NoSuchChain", **RANGE), rows)
        everything = _ids(get_json(api, "/api/downtime/events", **RANGE), rows)

        assert kusama == ["site_with_domain", "open", "endpoint_without_url", "site", "early"]
        assert polkadot == ["site_with_domain", "dom", "site", "early"]
        assert unknown == ["site_with_domain", "site", "early"]  # only site outages
        assert "unknown_type" in everything  # listed without a service filter, counted for none

    def test_it_answers_an_empty_list_for_a_quiet_period(
        self,
        api: Client,  # noqa: F811
        events: dict[str, MemberEvent],
    ) -> None:
        assert get_json(api, "/api/downtime/events", start="2025-01-01", end="2025-01-31") == []

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"start": "2025-02-30"}, "Invalid date format"),
            ({"start": "2025-03-02", "end": "2025-03-01"}, "start must not be after end"),
            ({"start": "2024-01-01", "end": "2025-02-04"}, "the date range must not span more than 366 days"),
            ({"member": "Stake\x01Plus"}, "Invalid member name"),
            ({"service": "Asset Hub"}, "Invalid service name"),
            ({"domain": "a/b"}, "Invalid domain"),
            ({"check_type": "ping"}, "Invalid check type"),
            ({"status": "Ongoing"}, "Invalid status"),
        ],
    )
    def test_it_answers_400_with_a_message(
        self,
        api: Client,  # noqa: F811
        db: None,
        params: dict[str, str],
        message: str,
    ) -> None:
        assert get_json(api, "/api/downtime/events", 400, **params) == {"error": message}


class TestCurrent:
    def test_it_lists_only_open_outages(self, api: Client, events: dict[str, MemberEvent]) -> None:  # noqa: F811
        body = get_json(api, "/api/downtime/current")
        assert _ids(body, events) == ["open"]
        assert "end_time" not in body[0]
        assert body[0]["status"] == "ongoing"

    def test_it_answers_an_empty_list_without_outages(self, api: Client, db: None) -> None:  # noqa: F811
        assert get_json(api, "/api/downtime/current") == []


class TestSummary:
    def test_it_merges_overlaps_per_member(self, api: Client, events: dict[str, MemberEvent]) -> None:  # noqa: F811
        """Stake Plus 3.5 h (merged, not 2 + 2.5 = 4.5), Amforc 4 h to now, Gatotech 1 h:
        8.5 h over 4 outages = 2.125 h on average."""
        assert get_json(api, "/api/downtime/summary", **RANGE) == {
            "affected_members": 3,
            "average_downtime_hours": 2.125,
            "end_date": "2025-03-02",
            "ongoing_events": 1,
            "resolved_events": 3,
            "start_date": "2025-03-01",
            "total_downtime_hours": 8.5,
            "total_events": 4,
        }

    def test_it_answers_zeros_for_a_quiet_period(self, api: Client, db: None) -> None:  # noqa: F811
        body = get_json(api, "/api/downtime/summary", start="2025-01-01", end="2025-01-02")
        assert body["total_events"] == 0
        assert body["total_downtime_hours"] == 0
        assert body["average_downtime_hours"] == 0

    def test_it_checks_dates(self, api: Client, db: None) -> None:  # noqa: F811
        assert get_json(api, "/api/downtime/summary", 400, end="bad") == {"error": "Invalid date format"}


class TestMemberStats:
    @pytest.fixture
    def usage(self, events: dict[str, MemberEvent]) -> None:
        """Stake Plus: 1 March polkadot.dotters DE 100 + 50 (two nodes), polkadot.ibp US 20;
        2 March polkadot.dotters DE 200. Amforc 999 on 1 March must not count."""
        de = {"country_code": "DE", "country_name": "Germany"}
        add_usage(
            [
                {
                    "date": utc(NOW).date().replace(day=1),
                    "domain_name": "polkadot.dotters.network",
                    "member_name": "Stake Plus",
                    "hits": 100,
                    **de,
                },
                {
                    "date": utc(NOW).date().replace(day=1),
                    "node_id": "NODE-B",
                    "domain_name": "polkadot.dotters.network",
                    "member_name": "Stake Plus",
                    "hits": 50,
                    **de,
                },
                {
                    "date": utc(NOW).date().replace(day=1),
                    "domain_name": "polkadot.ibp.network",
                    "member_name": "Stake Plus",
                    "hits": 20,
                    "country_code": "US",
                    "country_name": "United States",
                },
                {
                    "date": utc(NOW).date(),
                    "domain_name": "polkadot.dotters.network",
                    "member_name": "Stake Plus",
                    "hits": 200,
                    **de,
                },
                {
                    "date": utc(NOW).date().replace(day=1),
                    "domain_name": "kusama.ibp.network",
                    "member_name": "Amforc",
                    "hits": 999,
                    **de,
                },
            ]
        )

    def test_it_reports_usage_and_merged_downtime(self, api: Client, usage: None) -> None:  # noqa: F811
        """Total 100 + 50 + 20 + 200 = 370. Downtime 3.5 h merged = 12,600 s. The window has
        run 36 h = 129,600 s by now, so uptime = 117,000 / 129,600 = 90.2777…%, floored to
        6 decimals: 90.277777."""
        assert get_json(api, "/api/members/stats", name="Stake Plus", **RANGE) == {
            "end_date": "2025-03-02",
            "member_name": "Stake Plus",
            "service_breakdown": [
                {"service": "Polkadot", "domain": "polkadot.dotters.network", "requests": 350},
                {"service": "Polkadot", "domain": "polkadot.ibp.network", "requests": 20},
            ],
            "start_date": "2025-03-01",
            "top_countries": [
                {"country": "DE", "name": "Germany", "requests": 350},
                {"country": "US", "name": "United States", "requests": 20},
            ],
            "total_downtime_events": 2,
            "total_downtime_hours": 3.5,
            "total_requests": 370,
            "uptime_percentage": 90.277777,
        }

    def test_it_answers_zeros_for_an_unknown_member(self, api: Client, usage: None) -> None:  # noqa: F811
        assert get_json(api, "/api/members/stats", name="Nobody", **RANGE) == {
            "end_date": "2025-03-02",
            "member_name": "Nobody",
            "service_breakdown": [],
            "start_date": "2025-03-01",
            "top_countries": [],
            "total_downtime_events": 0,
            "total_downtime_hours": 0.0,
            "total_requests": 0,
            "uptime_percentage": 100.0,
        }

    def test_it_needs_a_name_and_checks_dates_first(self, api: Client, db: None) -> None:  # noqa: F811
        assert get_json(api, "/api/members/stats", 400) == {"error": "Member name required"}
        assert get_json(api, "/api/members/stats", 400, start="2025-1-1") == {"error": "Invalid date format"}
