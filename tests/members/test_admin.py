"""The admin of the registry and of metrics: every changelist loads with data, read-only.

(It lives here because the registry fixtures do; it covers metrics/admin.py too.)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from members.models import ConfigSnapshot, Member, Service
from members.services import config_sync
from metrics.models import (
    ClusterNode,
    FinalizeApplied,
    ListenerState,
    MatrixSession,
    MemberEvent,
    PendingRecovery,
    RequestStat,
    TelemetrySnapshot,
)
from metrics.rollups import usage_rollups_refresh

pytestmark = pytest.mark.django_db

T1 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MATRIX_TOKEN = "syt_aWJwLWFsZXJ0cw_secretTokenValue_0a1b2c"


@pytest.fixture
def admin_client_with_data(base_urls: dict[str, str], editable_urls: dict[str, str]) -> Client:
    config_sync(urls=base_urls, now=T1)
    members_file = Path(editable_urls["MembersConfig"])
    members_file.write_text(members_file.read_text().rstrip()[:-1] + ",}")
    config_sync(urls=editable_urls, now=datetime(2026, 1, 2, tzinfo=UTC))
    MemberEvent.objects.create(
        check_type="site",  # a legacy row
        check_name="ping",
        member_name="Stake Plus",
        start_time=datetime(2026, 1, 3, 10, 0, tzinfo=UTC),
        error="ping timeout",
    )
    closed = MemberEvent.objects.create(
        check_type="3",
        check_name="wss",
        endpoint="wss://rpc.dotters.network/polkadot",
        member_name="Amforc",
        domain_name="rpc.dotters.network",
        status=1,
        start_time=datetime(2026, 1, 4, 10, 0, tzinfo=UTC),
        end_time=datetime(2026, 1, 4, 10, 30, tzinfo=UTC),
    )
    for node, hits in (("dns-eu-1", 1200), ("dns-us-1", 800)):
        RequestStat.objects.create(
            date=date(2026, 1, 5),
            node_id=node,
            domain_name="rpc.dotters.network",
            member_name="Amforc",
            network_asn="AS16276",
            network_name="OVH SAS",
            country_code="FR",
            country_name="France",
            hits=hits,
        )
    usage_rollups_refresh(dates={date(2026, 1, 5)})  # the daily rollups, from the rows above
    ClusterNode.objects.create(
        node_id="monitor-zurich-1", node_role="IBPMonitor", first_seen=T1, last_heard=datetime(2026, 1, 5, tzinfo=UTC)
    )
    FinalizeApplied.objects.create(
        proposal_id="5b0c6f7e-2d0a-4c1e-9a53-2f7d8f1c9b10",
        proposed_status=True,
        outcome="closed",
        event_id=closed.pk,
        decided_at=datetime(2026, 1, 4, 10, 30, tzinfo=UTC),
        applied_at=datetime(2026, 1, 4, 10, 30, 1, tzinfo=UTC),
    )
    PendingRecovery.objects.create(
        check_type="3",
        check_name="wss",
        endpoint="wss://rpc.ibp.network/kusama",
        member_name="Dwellir",
        domain_name="rpc.ibp.network",
        decided_at=datetime(2026, 1, 5, 8, 0, tzinfo=UTC),
        proposal_id="rec-77",
        remembered_at=datetime(2026, 1, 5, 8, 0, 1, tzinfo=UTC),
    )
    ListenerState.objects.create(
        node_id="COLLATOR-01",
        connected=True,
        last_heartbeat_sent=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        queue_depths={"finalize": 3, "usage": 0, "rollups": 1},
        queue_dropped={"finalize": 0, "usage": 2},
        started_at=T1,
        updated_at=datetime(2026, 1, 5, 9, 0, 5, tzinfo=UTC),
    )
    MatrixSession.objects.create(
        homeserver_url="https://matrix.example.org",
        username="ibp-alerts",
        user_id="@ibp-alerts:example.org",
        device_id="COLLATORDEV1",
        access_token=MATRIX_TOKEN,
        logged_in_at=T1,
    )
    TelemetrySnapshot.objects.create(
        process="COLLATOR-01",
        samples=[
            {"family": "collator_nats_messages", "type": "counter", "help": "", "name": "collator_nats_messages_total",
             "labels": {"subject": "consensus.finalize"}, "value": 12},
            {"family": "collator_nats_rejects", "type": "counter", "help": "", "name": "collator_nats_rejects_total",
             "labels": {"reason": "missing_decided_at"}, "value": 1},
        ],
        updated_at=datetime(2026, 1, 5, 9, 0, 5, tzinfo=UTC),
    )  # fmt: skip
    user = User.objects.create_superuser("operator", "operator@example.org", "not-used")
    client = Client()
    client.force_login(user)
    return client


CHANGELISTS = {
    "members_member": ["Stake Plus", "Turboflakes", "North America"],
    "members_service": ["Asset-Hub-Polkadot", "Polkadot Network"],
    "members_serviceprovider": ["wss://rpc.dotters.network/polkadot", "Dotters"],
    "members_serviceassignment": ["Rotko Networks", "Coretime-Kusama"],
    "members_regionprice": ["South America", "14.172"],
    "members_configsnapshot": ["applied", "failed", "7 members, 22 services (22 active)", "invalid JSON at line"],
    "metrics_memberevent": ["Stake Plus", "ping timeout", "site", "endpoint", "open", "resolved"],
    "metrics_requeststat": ["dns-eu-1", "dns-us-1", "AS16276", "France", "1200"],
    "metrics_clusternode": ["monitor-zurich-1", "IBPMonitor"],
    "metrics_finalizeapplied": ["5b0c6f7e-2d0a-4c1e-9a53-2f7d8f1c9b10", "online", "closed"],
    "metrics_pendingrecovery": ["Dwellir", "wss://rpc.ibp.network/kusama", "endpoint", "rec-77"],
    "metrics_listenerstate": ["COLLATOR-01", "finalize 3, rollups 1, usage 0", "finalize 0, usage 2"],
    "metrics_matrixsession": ["ibp-alerts", "https://matrix.example.org", "@ibp-alerts:example.org", "COLLATORDEV1"],
    "metrics_telemetrysnapshot": ["COLLATOR-01", '<td class="field-sample_count">2</td>'],
    # 1200 + 800 from the two DNS nodes, summed by the rollup refresh.
    "metrics_requestdaily": ["Amforc", "rpc.dotters.network", "France", "AS16276", '<td class="field-hits">2000</td>'],
    "metrics_requestdailycountry": ["FR", "France", '<td class="field-hits">2000</td>'],
    "metrics_requestdailyasn": ["AS16276", "OVH SAS", '<td class="field-hits">2000</td>'],
    "metrics_requestdailydomain": ["rpc.dotters.network", '<td class="field-hits">2000</td>'],
    "metrics_requestdailymember": ["Amforc", '<td class="field-hits">2000</td>'],
}


@pytest.mark.parametrize("model", sorted(CHANGELISTS))
def test_it_loads_each_changelist_with_data(admin_client_with_data: Client, model: str) -> None:
    response = admin_client_with_data.get(reverse(f"admin:{model}_changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    for text in CHANGELISTS[model]:
        assert text in page, f"{text!r} missing from the {model} list"


@pytest.mark.parametrize("model", sorted(CHANGELISTS))
def test_it_allows_no_add_in_the_admin(admin_client_with_data: Client, model: str) -> None:
    assert admin_client_with_data.get(reverse(f"admin:{model}_add")).status_code == 403


def test_it_shows_a_member_read_only(admin_client_with_data: Client) -> None:
    member = Member.objects.get(member_index="Stake Plus")
    url = reverse("admin:members_member_change", args=[member.pk])

    page = admin_client_with_data.get(url).content.decode()
    response = admin_client_with_data.post(url, {"member_name": "Renamed"})

    assert "Asset-Hub-Polkadot" in page  # the assigned services, inline
    assert 'name="member_name"' not in page
    assert response.status_code == 403
    assert Member.objects.get(pk=member.pk).member_name == "Stake Plus"


def test_it_shows_a_failed_snapshot_readably(admin_client_with_data: Client) -> None:
    failed = ConfigSnapshot.objects.get(status=ConfigSnapshot.Status.FAILED)

    page = admin_client_with_data.get(reverse("admin:members_configsnapshot_change", args=[failed.pk])).content.decode()

    assert "<li><strong>MembersConfig</strong>" in page
    assert "invalid JSON at line" in page
    assert "members_professional.json" in page


def test_it_shows_provider_urls_of_a_service(admin_client_with_data: Client) -> None:
    polkadot = Service.objects.get(service_index="Polkadot")

    page = admin_client_with_data.get(reverse("admin:members_service_change", args=[polkadot.pk])).content.decode()

    assert "wss://polkadot.dotters.network<br>wss://rpc.dotters.network/polkadot" in page


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("check_type=1", "ping timeout", "wss://rpc.dotters.network/polkadot"),  # legacy 'site' counts as site
        ("check_type=3", "wss://rpc.dotters.network/polkadot", "ping timeout"),
        ("state=open", "ping timeout", "wss://rpc.dotters.network/polkadot"),
        ("state=resolved", "wss://rpc.dotters.network/polkadot", "ping timeout"),
        ("member=Amforc", "wss://rpc.dotters.network/polkadot", "ping timeout"),
    ],
)
def test_it_filters_member_events(admin_client_with_data: Client, query: str, shown: str, hidden: str) -> None:
    page = admin_client_with_data.get(f"{reverse('admin:metrics_memberevent_changelist')}?{query}").content.decode()

    assert shown in page
    assert hidden not in page


def test_it_filters_usage_without_a_full_count(admin_client_with_data: Client) -> None:
    url = reverse("admin:metrics_requeststat_changelist")

    response = admin_client_with_data.get(f"{url}?member=Amforc&q=dns-eu-1")

    page = response.content.decode()
    assert "dns-eu-1" in page
    assert "dns-us-1" not in page
    # show_full_result_count = False: no "(2 total)" link that would COUNT(*) the table.
    assert "total)" not in page
    assert response.context["cl"].result_count == 1


def test_it_lists_every_model_in_the_admin() -> None:
    """Issue 2: every model is registered (celery-beat's own admin covers its tables)."""
    from django.apps import apps
    from django.contrib import admin

    ours = [m for m in apps.get_models() if m._meta.app_label in {"members", "metrics", "billing", "collator"}]

    assert [m._meta.label for m in ours if not admin.site.is_registered(m)] == []
    assert {f"{m._meta.app_label}_{m._meta.model_name}" for m in ours if m._meta.app_label != "billing"} == set(
        CHANGELISTS
    ) | {"collator_apitoken"}


def test_it_never_shows_the_matrix_access_token(admin_client_with_data: Client) -> None:
    session = MatrixSession.objects.get()
    changelist = reverse("admin:metrics_matrixsession_changelist")

    pages = [
        admin_client_with_data.get(changelist).content.decode(),
        admin_client_with_data.get(reverse("admin:metrics_matrixsession_change", args=[session.pk])).content.decode(),
    ]
    searched = admin_client_with_data.get(f"{changelist}?q={MATRIX_TOKEN}")

    assert [MATRIX_TOKEN in page for page in pages] == [False, False]
    assert "COLLATORDEV1" in pages[1]
    assert searched.context["cl"].result_count == 0  # the token is not a search field either
