"""/api/requests/* against real rows (api-contract §2.1–2.5, DECISIONS 19)."""

from __future__ import annotations

from datetime import date

import pytest
from django.test import Client

from members.config_files import NetworkConfig
from metrics.selectors import service_domains
from tests.collator.api_fixtures import add_usage, api, get_json, network_config  # noqa: F401

D1 = date(2025, 3, 1)
D2 = date(2025, 3, 2)
RANGE = {"start": "2025-03-01", "end": "2025-03-02"}

HETZNER = {
    "network_asn": "AS24940",
    "network_name": "Hetzner Online GmbH",
    "country_code": "DE",
    "country_name": "Germany",
}
AMAZON = {"network_asn": "AS16509", "network_name": "Amazon.com", "country_code": "US", "country_name": "United States"}
CLOUD = {
    "network_asn": "AS13335",
    "network_name": "100% Cloud_Net",
    "country_code": "US",
    "country_name": "United States",
}


@pytest.fixture
def usage(network_config: NetworkConfig) -> None:  # noqa: F811
    """Two days on two nodes.

    1 March: polkadot.dotters.network (Stake Plus, Hetzner, DE) 100 on NODE-A + 50 on
    NODE-B = 150; kusama.ibp.network (Amforc, Amazon, US) 70; asset-hub-polkadot.dotters
    (Amforc, AS13335 "100% Cloud_Net", US) 30; rpc.dotters.network (Gatotech, no ASN, no
    country) 5.  2 March: polkadot (Stake Plus, DE) 200 and kusama (Amforc, US) 200, a tie.
    """
    add_usage(
        [
            {
                "date": D1,
                "node_id": "NODE-A",
                "domain_name": "polkadot.dotters.network",
                "member_name": "Stake Plus",
                "hits": 100,
                **HETZNER,
            },
            {
                "date": D1,
                "node_id": "NODE-B",
                "domain_name": "polkadot.dotters.network",
                "member_name": "Stake Plus",
                "hits": 50,
                **HETZNER,
            },
            {"date": D1, "domain_name": "kusama.ibp.network", "member_name": "Amforc", "hits": 70, **AMAZON},
            {
                "date": D1,
                "domain_name": "asset-hub-polkadot.dotters.network",
                "member_name": "Amforc",
                "hits": 30,
                **CLOUD,
            },
            {"date": D1, "domain_name": "rpc.dotters.network", "member_name": "Gatotech", "hits": 5},
            {
                "date": D2,
                "domain_name": "polkadot.dotters.network",
                "member_name": "Stake Plus",
                "hits": 200,
                **HETZNER,
            },
            {"date": D2, "domain_name": "kusama.ibp.network", "member_name": "Amforc", "hits": 200, **AMAZON},
        ]
    )


@pytest.mark.usefixtures("usage")
class TestShapes:
    def test_it_groups_by_country_with_dates_and_omits_empty_codes(self, api: Client) -> None:  # noqa: F811
        assert get_json(api, "/api/requests/country", **RANGE) == [
            {"date": "2025-03-01", "country": "DE", "country_name": "Germany", "requests": 150},
            {"date": "2025-03-01", "country": "US", "country_name": "United States", "requests": 100},
            {"date": "2025-03-01", "requests": 5},
            {"date": "2025-03-02", "country": "DE", "country_name": "Germany", "requests": 200},
            {"date": "2025-03-02", "country": "US", "country_name": "United States", "requests": 200},
        ]

    def test_it_groups_by_asn_and_network(self, api: Client) -> None:  # noqa: F811
        assert get_json(api, "/api/requests/asn", **RANGE) == [
            {"date": "2025-03-01", "asn": "AS24940", "network": "Hetzner Online GmbH", "requests": 150},
            {"date": "2025-03-01", "asn": "AS16509", "network": "Amazon.com", "requests": 70},
            {"date": "2025-03-01", "asn": "AS13335", "network": "100% Cloud_Net", "requests": 30},
            {"date": "2025-03-01", "requests": 5},
            {"date": "2025-03-02", "asn": "AS16509", "network": "Amazon.com", "requests": 200},
            {"date": "2025-03-02", "asn": "AS24940", "network": "Hetzner Online GmbH", "requests": 200},
        ]

    def test_it_maps_domains_to_services_deterministically(self, api: Client) -> None:  # noqa: F811
        """asset-hub-polkadot.dotters is Asset-Hub-Polkadot, never ETH-Asset-Hub-Polkadot (Q4);
        the shared rpc.dotters.network host belongs to no single service: its own name, `Rpc`."""
        assert get_json(api, "/api/requests/service", **RANGE) == [
            {"date": "2025-03-01", "service": "Polkadot", "domain": "polkadot.dotters.network", "requests": 150},
            {"date": "2025-03-01", "service": "Kusama", "domain": "kusama.ibp.network", "requests": 70},
            {
                "date": "2025-03-01",
                "service": "Asset-Hub-Polkadot",
                "domain": "asset-hub-polkadot.dotters.network",
                "requests": 30,
            },
            {"date": "2025-03-01", "service": "Rpc", "domain": "rpc.dotters.network", "requests": 5},
            {"date": "2025-03-02", "service": "Kusama", "domain": "kusama.ibp.network", "requests": 200},
            {"date": "2025-03-02", "service": "Polkadot", "domain": "polkadot.dotters.network", "requests": 200},
        ]

    def test_it_groups_by_member(self, api: Client) -> None:  # noqa: F811
        assert get_json(api, "/api/requests/member", **RANGE) == [
            {"date": "2025-03-01", "member": "Stake Plus", "requests": 150},
            {"date": "2025-03-01", "member": "Amforc", "requests": 100},
            {"date": "2025-03-01", "member": "Gatotech", "requests": 5},
            {"date": "2025-03-02", "member": "Amforc", "requests": 200},
            {"date": "2025-03-02", "member": "Stake Plus", "requests": 200},
        ]

    def test_it_sums_the_summary_without_counting_empty_values(self, api: Client) -> None:  # noqa: F811
        """150 + 70 + 30 + 5 + 200 + 200 = 655; countries DE, US (the empty one is not a country)."""
        assert get_json(api, "/api/requests/summary", **RANGE) == {
            "end_date": "2025-03-02",
            "start_date": "2025-03-01",
            "total_requests": 655,
            "unique_asns": 3,
            "unique_countries": 2,
            "unique_domains": 4,
            "unique_members": 3,
        }

    def test_it_reads_one_day_when_start_equals_end(self, api: Client) -> None:  # noqa: F811
        rows = get_json(api, "/api/requests/member", start="2025-03-02", end="2025-03-02")
        assert [row["requests"] for row in rows] == [200, 200]

    @pytest.mark.parametrize("path", ["country", "asn", "service", "member"])
    def test_it_answers_an_empty_list_for_an_empty_period(self, api: Client, path: str) -> None:  # noqa: F811
        assert get_json(api, f"/api/requests/{path}", start="2024-01-01", end="2024-01-31") == []

    def test_it_answers_zeros_for_an_empty_summary(self, api: Client) -> None:  # noqa: F811
        body = get_json(api, "/api/requests/summary", start="2024-01-01", end="2024-01-31")
        assert body["total_requests"] == 0
        assert body["unique_countries"] == body["unique_asns"] == body["unique_members"] == body["unique_domains"] == 0


@pytest.mark.usefixtures("usage")
class TestFilters:
    def test_it_matches_a_lower_case_country_code(self, api: Client) -> None:  # noqa: F811
        rows = get_json(api, "/api/requests/country", country="us", **RANGE)
        assert [(r["date"], r["country"], r["requests"]) for r in rows] == [
            ("2025-03-01", "US", 100),
            ("2025-03-02", "US", 200),
        ]

    @pytest.mark.parametrize("value", ["AS16509", "as16509", "16509"])
    def test_it_normalises_asns(self, api: Client, value: str) -> None:  # noqa: F811
        rows = get_json(api, "/api/requests/asn", asn=value, **RANGE)
        assert [(r["date"], r["asn"], r["requests"]) for r in rows] == [
            ("2025-03-01", "AS16509", 70),
            ("2025-03-02", "AS16509", 200),
        ]

    def test_it_filters_across_dimensions(self, api: Client) -> None:  # noqa: F811
        """Amforc's countries: 1 March US 70 + 30 = 100; 2 March US 200."""
        rows = get_json(api, "/api/requests/country", member="Amforc", **RANGE)
        assert [(r["date"], r["country"], r["requests"]) for r in rows] == [
            ("2025-03-01", "US", 100),
            ("2025-03-02", "US", 200),
        ]

    def test_it_filters_by_domain_list(self, api: Client) -> None:  # noqa: F811
        rows = get_json(api, "/api/requests/member", domain="Kusama.IBP.network,rpc.dotters.network", **RANGE)
        assert [(r["date"], r.get("member"), r["requests"]) for r in rows] == [
            ("2025-03-01", "Amforc", 70),
            ("2025-03-01", "Gatotech", 5),
            ("2025-03-02", "Amforc", 200),
        ]

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("country", [("2025-03-01", 150), ("2025-03-02", 200)]),
            ("asn", [("2025-03-01", 150), ("2025-03-02", 200)]),
            ("service", [("2025-03-01", 150), ("2025-03-02", 200)]),
            ("member", [("2025-03-01", 150), ("2025-03-02", 200)]),
        ],
    )
    def test_it_honours_the_service_filter_on_every_endpoint(
        self,
        api: Client,  # noqa: F811
        path: str,
        expected: list[tuple[str, int]],
    ) -> None:
        """service=Polkadot selects polkadot.dotters/ibp.network only: not the shared
        rpc.dotters.network (5) and not asset-hub-polkadot (30), unlike the reference's
        substring match (Q5)."""
        rows = get_json(api, f"/api/requests/{path}", service="Polkadot", **RANGE)
        assert [(r["date"], r["requests"]) for r in rows] == expected

    def test_it_answers_nothing_for_an_unknown_service(self, api: Client) -> None:  # noqa: F811
        assert get_json(api, "/api/requests/country", service="No-Such-Chain", **RANGE) == []

    def test_it_accepts_forty_services_and_eighty_domains(
        self,
        api: Client,  # noqa: F811
        network_config: NetworkConfig,  # noqa: F811
    ) -> None:
        """The dashboard sends about two domains per selected service (Q8). All 22 real
        services plus 18 unknown keys, and every real host plus made-up ones up to 80:
        everything of the fixture except the shared rpc.dotters.network host (5) is selected,
        so 1 March is 150 + 70 + 30 = 250 and 2 March 400."""
        services = sorted(network_config.services) + [f"Extra-{i}" for i in range(18)]
        assert len(services) == 40
        domains = sorted(service_domains(config=network_config, services=network_config.services))
        domains += [f"extra-{i}.example.org" for i in range(80 - len(domains))]
        assert len(domains) == 80
        for params in ({"service": ",".join(services)}, {"domain": ",".join(domains)}):
            rows = get_json(api, "/api/requests/member", **params, **RANGE)
            totals: dict[str, int] = {}
            for row in rows:
                totals[row["date"]] = totals.get(row["date"], 0) + row["requests"]
            assert totals == {"2025-03-01": 250, "2025-03-02": 400}


class TestNetworkSubstring:
    def test_it_matches_percent_and_underscore_literally(self, api: Client, db: None) -> None:  # noqa: F811
        """`100%` must not match `1000 Networks` (a LIKE '%100%%' would); `d_net` must not
        match `Cloud-Net`/`cloudXnet`; the match ignores case."""
        add_usage(
            [
                {"date": D1, "network_asn": "AS1", "network_name": "100% Cloud_Net", "hits": 1},
                {"date": D1, "network_asn": "AS2", "network_name": "1000 Networks", "hits": 2},
                {"date": D1, "network_asn": "AS3", "network_name": "CloudXNet", "hits": 4},
            ]
        )
        day = {"start": "2025-03-01", "end": "2025-03-01"}
        assert [r["asn"] for r in get_json(api, "/api/requests/asn", network="100%", **day)] == ["AS1"]
        assert [r["asn"] for r in get_json(api, "/api/requests/asn", network="D_NET", **day)] == ["AS1"]
        assert [r["asn"] for r in get_json(api, "/api/requests/asn", network="100", **day)] == ["AS2", "AS1"]
        # Also through the wide rollup (a network filter on the country endpoint): same answer.
        assert get_json(api, "/api/requests/country", network="100%", **day) == [{"date": "2025-03-01", "requests": 1}]


class TestBadInput:
    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"start": "2025-3-01"}, "Invalid date format"),
            ({"start": "2025-02-30"}, "Invalid date format"),
            ({"end": "20250301"}, "Invalid date format"),
            ({"start": "2025-03-02", "end": "2025-03-01"}, "start must not be after end"),
            ({"start": "2024-01-01", "end": "2025-02-04"}, "the date range must not span more than 366 days"),
            ({"country": "USA"}, "Invalid filter: invalid country code: USA"),
            ({"asn": "ASX1"}, "Invalid filter: invalid ASN: ASX1"),
            ({"network": "n" * 101}, "Invalid filter: network name too long"),
            ({"service": "Polkadot Network"}, "Invalid filter: invalid service name: Polkadot Network"),
            ({"member": "Stake\tPlus"}, "Invalid filter: invalid member name: Stake\tPlus"),
            ({"domain": "bad domain!"}, "Invalid filter: invalid domain name: bad domain!"),
            (
                {"domain": ",".join(f"d{i}.example" for i in range(401))},
                "Invalid filter: too many values for domain (max 400)",
            ),
        ],
    )
    @pytest.mark.parametrize("path", ["country", "asn", "service", "member"])
    def test_it_answers_400_with_a_message(
        self,
        api: Client,  # noqa: F811
        path: str,
        params: dict[str, str],
        message: str,
    ) -> None:
        assert get_json(api, f"/api/requests/{path}", 400, **params) == {"error": message}

    def test_it_checks_the_summary_dates(self, api: Client) -> None:  # noqa: F811
        assert get_json(api, "/api/requests/summary", 400, start="2025-13-01") == {"error": "Invalid date format"}

    def test_it_accepts_a_366_day_span(self, api: Client) -> None:  # noqa: F811
        assert get_json(api, "/api/requests/country", start="2024-01-01", end="2024-12-31") == []


class TestHttp:
    def test_it_accepts_a_trailing_slash(self, api: Client) -> None:  # noqa: F811
        assert get_json(api, "/api/requests/country/", start="2024-01-01", end="2024-01-01") == []

    def test_it_answers_405_to_writes(self, api: Client) -> None:  # noqa: F811
        response = api.post("/api/requests/country", {})
        assert response.status_code == 405
        assert response.json() == {"error": 'Method "POST" not allowed.'}

    def test_it_uses_the_first_of_repeated_parameters(self, api: Client) -> None:  # noqa: F811
        response = api.get("/api/requests/summary?start=2025-03-01&start=bad&end=2025-03-01")
        assert response.status_code == 200

    def test_it_answers_a_cors_preflight_with_authorization_allowed(self, api: Client) -> None:  # noqa: F811
        response = api.options(
            "/api/requests/country",
            HTTP_ORIGIN="https://dashboard.example",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
        )
        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == "*"
        allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert "GET" in response["Access-Control-Allow-Methods"]
        assert response["Access-Control-Max-Age"] == "3600"  # api-contract §1.4

    def test_it_sends_cors_headers_on_answers_and_ignores_a_stale_token(self, api: Client) -> None:  # noqa: F811
        response = api.get(
            "/api/requests/country",
            {"start": "2024-01-01", "end": "2024-01-01"},
            HTTP_ORIGIN="https://dashboard.example",
            HTTP_AUTHORIZATION="Bearer whatever-the-browser-kept",
        )
        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == "*"
