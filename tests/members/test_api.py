"""/api/members and /api/services* on the real IBP config (api-contract §2.9, §2.11–2.14)."""

from __future__ import annotations

import pytest
from django.test import Client

from members.config_files import NetworkConfig
from tests.collator.api_fixtures import api, get_json, network_config  # noqa: F401

MEMBER_KEYS = ["Amforc", "Dwellir", "Gatotech", "RadiumBlock", "Rotko Networks", "Stake Plus", "Turboflakes"]


@pytest.mark.usefixtures("network_config")
class TestMembers:
    def test_it_lists_every_member_sorted_by_key(self, api: Client) -> None:  # noqa: F811
        body = get_json(api, "/api/members")
        assert [m["name"] for m in body] == MEMBER_KEYS
        # Inactive members are listed too.
        assert {m["name"]: m["active"] for m in body}["Rotko Networks"] is False

    def test_it_answers_one_member_in_the_contract_shape(self, api: Client) -> None:  # noqa: F811
        body = get_json(api, "/api/members", name="Stake Plus")
        assert list(body) == [
            "name",
            "website",
            "logo",
            "level",
            "joined_date",
            "region",
            "latitude",
            "longitude",
            "service_ipv4",
            "services",
            "active",
            "override",
        ]
        assert body["name"] == "Stake Plus"
        assert body["website"] == "https://stake.plus"
        assert body["level"] == 6
        # Joined 1672549200 = 2023-01-01 05:00 UTC.
        assert body["joined_date"] == "2023-01-01"
        assert body["region"] == "North America"
        assert body["latitude"] == 38.7777
        assert body["longitude"] == -77.5474
        assert body["service_ipv4"] == "192.96.202.175"
        assert "service_ipv6" not in body  # empty in the config: left out
        assert len(body["services"]) == 22
        assert body["services"][:3] == ["Paseo", "Asset-Hub-Paseo", "ETH-Asset-Hub-Paseo"]
        assert all(isinstance(s, str) for s in body["services"])
        assert body["active"] is True
        assert body["override"] is False

    def test_it_answers_404_for_an_unknown_member(self, api: Client) -> None:  # noqa: F811
        assert get_json(api, "/api/members", 404, name="Unknown") == {"error": "Member not found"}


def test_it_lists_no_members_before_the_first_config_sync(api: Client) -> None:  # noqa: F811
    assert get_json(api, "/api/members") == []
    assert get_json(api, "/api/services") == {"services": [], "total": 0}
    assert get_json(api, "/api/services", hierarchy="true") == {"relay_chains": [], "orphans": []}


@pytest.mark.usefixtures("network_config")
class TestServices:
    def test_it_lists_services_sorted_by_lower_cased_key(self, api: Client) -> None:  # noqa: F811
        body = get_json(api, "/api/services")
        assert list(body) == ["services", "total"]
        names = [s["name"] for s in body["services"]]
        assert body["total"] == len(names) == 22
        assert names == sorted(names, key=str.lower)
        assert names.index("Encointer-Kusama") < names.index("ETH-Asset-Hub-Kusama")

    def test_it_answers_one_service_in_the_contract_shape(self, api: Client) -> None:  # noqa: F811
        """Hydration: 2 nodes of 4 cores, 16 GB, 832 GB disk, 1600 bandwidth; all 5 active
        members carry it (Rotko Networks and RadiumBlock are inactive)."""
        body = get_json(api, "/api/services", name="Hydration")
        assert body["name"] == "Hydration"
        assert body["display_name"] == "Hydration"
        assert body["service_type"] == "RPC"
        assert body["relay_network"] == "Polkadot"
        assert body["network_type"] == "Community"
        assert body["active"] is True
        assert body["level_required"] == 6
        assert body["resources"] == {"nodes": 2, "cores": 4, "memory": 16, "disk": 832, "bandwidth": 1600}
        assert body["providers"] == [
            {"name": "Dotters", "rpc_urls": ["wss://hydration.dotters.network"]},
            {"name": "Ibp", "rpc_urls": ["wss://hydration.ibp.network"]},
        ]
        assert body["member_count"] == 5
        assert body["total_monthly_cost"] == 0
        assert list(body) == [
            "name",
            "display_name",
            "service_type",
            "network_name",
            "relay_network",
            "network_type",
            "website_url",
            "logo_url",
            "description",
            "active",
            "level_required",
            "resources",
            "providers",
            "member_count",
            "total_monthly_cost",
        ]

    def test_it_answers_404_for_an_unknown_service_key(self, api: Client) -> None:  # noqa: F811
        # Keys are exact and case-sensitive (api-contract §2.12).
        assert get_json(api, "/api/services", 404, name="hydration") == {"error": "Service not found"}

    def test_it_groups_chains_under_their_relays(self, api: Client) -> None:  # noqa: F811
        body = get_json(api, "/api/services", hierarchy="true")
        assert list(body) == ["relay_chains", "orphans"]
        assert [chain["relay"]["name"] for chain in body["relay_chains"]] == ["Kusama", "Paseo", "Polkadot"]
        polkadot = body["relay_chains"][2]
        assert [s["name"] for s in polkadot["community_chains"]] == ["Hydration"]
        assert [s["display_name"] for s in polkadot["system_chains"]] == [
            "Asset Hub (Polkadot)",
            "Bridge Hub (Polkadot)",
            "Collectives (Polkadot)",
            "Coretime (Polkadot)",
            "ETHRPC Asset Hub (Polkadot)",
            "People (Polkadot)",
        ]
        assert body["relay_chains"][0]["community_chains"] == []
        assert body["orphans"] == []

    def test_it_takes_only_the_exact_value_true_for_the_hierarchy(self, api: Client) -> None:  # noqa: F811
        assert list(get_json(api, "/api/services", hierarchy="True")) == ["services", "total"]

    def test_it_summarises_the_catalogue(
        self,
        api: Client,  # noqa: F811
        network_config: NetworkConfig,  # noqa: F811
    ) -> None:
        """Resources are value × nodes over all services; checked against the config itself."""
        body = get_json(api, "/api/services/summary")
        services = network_config.services.values()
        assert body == {
            "active_services": 22,
            "network_types": {"Community": 1, "Relay": 3, "System": 18},
            "relay_chains": 3,
            "service_types": {"ETHRPC": 3, "RPC": 19},
            "total_resources": {
                "nodes": sum(s.nodes for s in services),
                "cores": sum(s.cores * s.nodes for s in services),
                "memory": sum(s.memory * s.nodes for s in services),
                "disk": sum(s.disk * s.nodes for s in services),
                "bandwidth": sum(s.bandwidth * s.nodes for s in services),
            },
            "total_services": 22,
        }
        assert body["total_resources"] == {"nodes": 29, "cores": 101, "memory": 394, "disk": 31016, "bandwidth": 74700}
