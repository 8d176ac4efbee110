"""Query parameters and response shapes of the members and services endpoints."""

from __future__ import annotations

from rest_framework import serializers

from collator.api_common import TextParamField


class MembersFilterSerializer(serializers.Serializer):
    name = TextParamField(help_text="A member key (or Details.Name): answers that member alone.")


class ServicesFilterSerializer(serializers.Serializer):
    name = TextParamField(help_text="An exact service key.")
    hierarchy = TextParamField(help_text="`true` (exactly) groups the chains under their relays.")


class MemberSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The member key.")
    website = serializers.CharField(required=False)
    logo = serializers.CharField(required=False)
    level = serializers.IntegerField()
    joined_date = serializers.DateField()
    region = serializers.CharField(allow_blank=True)
    latitude = serializers.FloatField()
    longitude = serializers.FloatField()
    service_ipv4 = serializers.CharField(required=False)
    service_ipv6 = serializers.CharField(required=False)
    services = serializers.ListField(child=serializers.CharField())
    active = serializers.BooleanField()
    override = serializers.BooleanField()


class ResourcesSerializer(serializers.Serializer):
    nodes = serializers.IntegerField()
    cores = serializers.FloatField()
    memory = serializers.FloatField()
    disk = serializers.FloatField()
    bandwidth = serializers.FloatField()


class ProviderSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    rpc_urls = serializers.ListField(child=serializers.CharField(allow_blank=True))


class ServiceSerializer(serializers.Serializer):
    name = serializers.CharField()
    display_name = serializers.CharField(allow_blank=True)
    service_type = serializers.CharField(allow_blank=True)
    network_name = serializers.CharField(allow_blank=True)
    relay_network = serializers.CharField(allow_blank=True)
    network_type = serializers.CharField(allow_blank=True)
    website_url = serializers.CharField(allow_blank=True)
    logo_url = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    active = serializers.BooleanField()
    level_required = serializers.IntegerField()
    resources = ResourcesSerializer()
    providers = ProviderSerializer(many=True)
    member_count = serializers.IntegerField(min_value=0)
    total_monthly_cost = serializers.FloatField()


class ServiceListSerializer(serializers.Serializer):
    services = ServiceSerializer(many=True)
    total = serializers.IntegerField(min_value=0)


class RelayChainSerializer(serializers.Serializer):
    relay = ServiceSerializer()
    system_chains = ServiceSerializer(many=True)
    community_chains = ServiceSerializer(many=True)


class ServiceHierarchySerializer(serializers.Serializer):
    relay_chains = RelayChainSerializer(many=True)
    orphans = ServiceSerializer(many=True)


class ServiceSummarySerializer(serializers.Serializer):
    active_services = serializers.IntegerField(min_value=0)
    network_types = serializers.DictField(child=serializers.IntegerField(min_value=0))
    relay_chains = serializers.IntegerField(min_value=0)
    service_types = serializers.DictField(child=serializers.IntegerField(min_value=0))
    total_resources = ResourcesSerializer()
    total_services = serializers.IntegerField(min_value=0)
