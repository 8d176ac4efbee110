"""A simulated IBP network on a real NATS server: DNS nodes and monitors as real peers.

For staging, the demo, the tests and the benchmark (`manage.py simulate_network`). Every
peer has its own NATS connection and speaks the Go formats of nats-protocol §5 through
`metrics.protocol`.

- DNS nodes (`IBPDns`) join every heartbeat and answer `dns.usage.getUsage` with day totals
  per (domain, member, country, ASN, IP family): a skewed (Zipf) spread over real ISO
  countries and plausible ASN names, growing through the day by the node's clock, and the
  full total for a past day, so backfill works. The same seed, node and date always give
  the same numbers.
- Monitors (`IBPMonitor`) join, and on a schedule propose, vote and finalize outages of the
  configured members' checks, with a share of duplicate finalizes (one per monitor, as MON
  does) and of crossed ones (the online finalize published before the offline).

Everything random comes from `random.Random` seeded with `--seed`, so runs are
reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

import nats

from metrics.protocol import (
    ROLE_DNS,
    ROLE_MONITOR,
    SUBJECT_CLUSTER,
    SUBJECT_FINALIZE,
    SUBJECT_PROPOSE,
    SUBJECT_USAGE_DATA,
    SUBJECT_USAGE_REQUEST,
    SUBJECT_VOTE,
    ClusterMessage,
    FinalizeMessage,
    GoTime,
    Proposal,
    ProtocolError,
    UsageRequest,
    Vote,
    go_string,
    usage_date_text,
)

logger = logging.getLogger("metrics.simulator")

# ISO 3166 codes and names, with a rough share of DNS queries (heavily skewed, like real traffic).
COUNTRIES: tuple[tuple[str, str, float], ...] = (
    ("US", "United States", 22),
    ("DE", "Germany", 14),
    ("CN", "China", 8),
    ("GB", "United Kingdom", 6),
    ("FR", "France", 5),
    ("NL", "Netherlands", 5),
    ("SG", "Singapore", 4),
    ("JP", "Japan", 4),
    ("KR", "South Korea", 3),
    ("CH", "Switzerland", 3),
    ("CA", "Canada", 3),
    ("FI", "Finland", 2),
    ("PL", "Poland", 2),
    ("TR", "Türkiye", 2),
    ("IN", "India", 2),
    ("BR", "Brazil", 2),
    ("AU", "Australia", 2),
    ("UA", "Ukraine", 1.5),
    ("ES", "Spain", 1.5),
    ("IT", "Italy", 1.5),
    ("HK", "Hong Kong", 1.5),
    ("VN", "Vietnam", 1),
    ("SE", "Sweden", 1),
    ("AT", "Austria", 1),
    ("PT", "Portugal", 1),
    ("AR", "Argentina", 0.8),
    ("ID", "Indonesia", 0.8),
    ("TH", "Thailand", 0.7),
    ("ZA", "South Africa", 0.5),
    ("NG", "Nigeria", 0.4),
    ("MX", "Mexico", 0.4),
    ("??", "Unknown", 0.6),
)

# A few real networks per country; the long tail gets plausible regional names.
ASN_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "US": (
        ("AS16509", "Amazon.com, Inc."),
        ("AS15169", "Google LLC"),
        ("AS7922", "Comcast Cable Communications, LLC"),
        ("AS701", "Verizon Business"),
        ("AS14061", "DigitalOcean, LLC"),
    ),
    "DE": (
        ("AS24940", "Hetzner Online GmbH"),
        ("AS3320", "Deutsche Telekom AG"),
        ("AS3209", "Vodafone GmbH"),
        ("AS51167", "Contabo GmbH"),
    ),
    "CN": (
        ("AS4134", "Chinanet"),
        ("AS4837", "China Unicom Backbone"),
        ("AS45090", "Shenzhen Tencent Computer Systems"),
    ),
    "GB": (("AS2856", "British Telecommunications PLC"), ("AS5089", "Virgin Media Limited")),
    "FR": (("AS16276", "OVH SAS"), ("AS12322", "Free SAS"), ("AS3215", "Orange S.A.")),
    "NL": (("AS60781", "LeaseWeb Netherlands B.V."), ("AS1136", "KPN B.V.")),
    "SG": (("AS14061", "DigitalOcean, LLC"), ("AS9506", "Singtel Fibre Broadband")),
    "JP": (("AS2516", "KDDI Corporation"), ("AS4713", "NTT Communications Corporation")),
    "FI": (("AS24940", "Hetzner Online GmbH"), ("AS1759", "Telia Finland Oyj")),
    "TR": (("AS9121", "Türk Telekom"), ("AS15924", "Vodafone Net İletişim")),
}
TAIL_WORDS = ("Telecom", "Broadband", "Networks", "Fibre", "Datacenter", "Cable", "Internet", "Mobile")


@dataclass(frozen=True)
class CheckTarget:
    member_name: str
    check_type: str  # site / domain / endpoint
    check_name: str
    domain_name: str
    endpoint: str


@dataclass(frozen=True)
class NetworkShape:
    """What the simulated network serves: members (Details.Name) and service URLs."""

    members: tuple[str, ...]
    urls: tuple[str, ...]  # RPC URLs exactly as in the services config
    member_urls: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(sorted({(urlsplit(u).hostname or "").lower() for u in self.urls} - {""}))

    def targets(self) -> list[CheckTarget]:
        targets: list[CheckTarget] = []
        for member in self.members:
            targets.append(CheckTarget(member, "site", "ping", "", ""))
            urls = self.member_urls.get(member, self.urls)
            for domain in sorted({(urlsplit(u).hostname or "").lower() for u in urls} - {""}):
                targets.append(CheckTarget(member, "domain", "ssl", domain, ""))
            for url in urls:
                host = (urlsplit(url).hostname or "").lower()
                check = "ethrpc" if url.startswith("http") else "wss"
                targets.append(CheckTarget(member, "endpoint", check, host, url))
        return targets


def network_shape_from_config() -> NetworkShape:
    """Members and services of the synced config; the bundled files when nothing is synced."""
    from django.conf import settings
    from django.db import DatabaseError

    from members.config_files import parse_network_config
    from members.selectors import NoConfigError, config_snapshot_in_force
    from members.services import config_fetch, config_source_resolve

    try:
        config = config_snapshot_in_force(at=datetime.now(UTC)).config
    except (NoConfigError, DatabaseError):
        # Nothing synced yet (or no migrated DB): the configured files stand in, read as the
        # config sync reads them (a URL, or a path relative to the config file).
        urls = settings.COLLATOR.system.config_urls
        files = {
            key: config_fetch(source=config_source_resolve(urls.get(key, "").strip()), key=key)
            for key in ("MembersConfig", "ServicesConfig", "IaasPricingConfig")
        }
        config = parse_network_config(files)
    member_urls: dict[str, tuple[str, ...]] = {}
    all_urls: set[str] = set()
    for member in config.members.values():
        urls: list[str] = []
        for service in config.member_services(member):
            for provider in service.providers:
                urls.extend(provider.rpc_urls)
        member_urls[member.name] = tuple(dict.fromkeys(urls))
        all_urls.update(urls)
    return NetworkShape(members=tuple(sorted(member_urls)), urls=tuple(sorted(all_urls)), member_urls=member_urls)


def _stable_int(*parts: object) -> int:
    """A hash that is the same in every process (Python's hash() is salted)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class UsageUniverse:
    """The (domain, member, country, ASN, IPv6) combinations one DNS node sees, with weights."""

    def __init__(self, shape: NetworkShape, *, seed: int, node_id: str, records: int) -> None:
        rng = random.Random(_stable_int(seed, node_id, "universe"))
        domains = shape.domains or ("rpc.ibp.network",)
        members = (*shape.members, "(none)") if shape.members else ("(none)",)
        countries = COUNTRIES
        country_weights = [c[2] for c in countries]
        self.keys: list[tuple[str, str, str, str, str, str, bool]] = []
        self.weights: list[float] = []
        seen: set[tuple[str, str, str, str, bool]] = set()
        tail_size = max(8, records // max(1, len(domains) * len(countries)))
        attempts = 0
        while len(self.keys) < records and attempts < records * 20:
            attempts += 1
            code, name, _ = rng.choices(countries, weights=country_weights)[0]
            asn, network = self._asn(rng, code, tail_size)
            domain = domains[min(int(rng.paretovariate(1.2)) - 1, len(domains) - 1)]
            member = members[rng.randrange(len(members))]
            ipv6 = rng.random() < 0.3
            identity = (domain, member, code, asn, ipv6)
            if identity in seen:
                continue
            seen.add(identity)
            self.keys.append((domain, member, code, asn, network, name, ipv6))
            # Zipf-like: a few keys carry most of the traffic.
            self.weights.append(5000.0 / (1 + len(self.keys)) ** 0.9 + rng.random() * 20)

    @staticmethod
    def _asn(rng: random.Random, code: str, tail_size: int) -> tuple[str, str]:
        known = ASN_NAMES.get(code, ())
        if code == "??" or rng.random() < 0.03:
            return "", ""
        if known and rng.random() < 0.6:
            return known[rng.randrange(len(known))]
        index = rng.randrange(tail_size)
        number = 200_000 + (_stable_int(code, index) % 190_000)
        word = TAIL_WORDS[index % len(TAIL_WORDS)]
        return f"AS{number}", f"{code} {word} {index}"


def day_fraction(day: date, now: datetime, *, lag: timedelta = timedelta(minutes=5)) -> float:
    """How much of `day` a node has written by `now` (it flushes every 5 minutes, §5.6)."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    elapsed = (now - lag - start).total_seconds()
    return min(max(elapsed / 86400.0, 0.0), 1.0)


class SimulatedDnsNode:
    def __init__(
        self, node_id: str, shape: NetworkShape, *, seed: int, records: int, clock: Callable[[], datetime]
    ) -> None:
        self.node_id = node_id
        self.seed = seed
        self.clock = clock
        self.universe = UsageUniverse(shape, seed=seed, node_id=node_id, records=records)
        self.nc: Any = None
        self.extra_hits: dict[int, int] = {}  # record index → hits added (benchmark "changes")
        self.requests_seen = 0
        self._prefix: list[str] = []
        self._encoded: dict[tuple[date, float, int], bytes] = {}
        self._generation = 0

    def day_totals(self, day: date) -> list[int]:
        """The node's full-day total per record for `day`: deterministic for (seed, node, day)."""
        rng = random.Random(_stable_int(self.seed, self.node_id, day.isoformat()))
        day_factor = 0.7 + 0.6 * rng.random()
        return [max(1, int(w * day_factor * (0.5 + rng.random()))) for w in self.universe.weights]

    def hits_so_far(self, day: date, now: datetime) -> list[int]:
        fraction = day_fraction(day, now)
        totals = self.day_totals(day)
        hits = [int(total * fraction) for total in totals]
        for index, extra in self.extra_hits.items():
            hits[index] += extra
        return hits

    def change_hits(self, *, share: float, seed: int) -> int:
        """Add hits to a deterministic `share` of the records (the benchmark's second round)."""
        rng = random.Random(seed)
        count = int(len(self.universe.keys) * share)
        for index in rng.sample(range(len(self.universe.keys)), count):
            self.extra_hits[index] = self.extra_hits.get(index, 0) + 1 + rng.randrange(50)
        self._generation += 1
        return count

    def reply_bytes(self, request: UsageRequest) -> bytes:
        """Answer as the Go responder does (§5.5): validated dates, one reply for the range."""
        if len(request.start_date) != 10 or len(request.end_date) != 10:
            return f'{{"nodeID":{go_string(self.node_id)},"usageRecords":[]}}'.encode()
        try:
            first, last = date.fromisoformat(request.start_date), date.fromisoformat(request.end_date)
        except ValueError:
            return f'{{"nodeID":{go_string(self.node_id)},"usageRecords":[]}}'.encode()
        if request.start_date > request.end_date:
            return (
                f'{{"nodeID":{go_string(self.node_id)},"usageRecords":[],'
                '"error":"StartDate must be before or equal to EndDate"}'
            ).encode()
        parts: list[bytes] = []
        day = first
        while day <= last and (day - first).days < 62:
            parts.append(self._day_records(day))
            day += timedelta(days=1)
        body = b",".join(p for p in parts if p)
        if not body:
            return f'{{"nodeID":{go_string(self.node_id)},"usageRecords":null}}'.encode()
        return b'{"nodeID":' + go_string(self.node_id).encode() + b',"usageRecords":[' + body + b"]}"

    def _day_records(self, day: date) -> bytes:
        now = self.clock()
        fraction = round(day_fraction(day, now), 6)
        cache_key = (day, fraction, self._generation)
        cached = self._encoded.get(cache_key)
        if cached is not None:
            return cached
        hits = self.hits_so_far(day, now)
        date_text = go_string(usage_date_text(day))
        if not self._prefix:
            for domain, member, code, asn, network, country, _ipv6 in self.universe.keys:
                self._prefix.append(
                    f'{{"nodeid":"","date":%s,"domain":{go_string(domain)},"memberName":{go_string(member)},'
                    f'"countryCode":{go_string(code)},"asn":{go_string(asn)},"networkName":{go_string(network)},'
                    f'"countryName":{go_string(country)},"hits":'
                )
        records = [
            f'{prefix % date_text}{count},"isIPv6":{"true" if key[6] else "false"}}}'
            for prefix, count, key in zip(self._prefix, hits, self.universe.keys, strict=True)
            if count > 0
        ]
        encoded = ",".join(records).encode()
        if len(self._encoded) > 8:
            self._encoded.clear()
        self._encoded[cache_key] = encoded
        return encoded

    def prepare(self, day: date) -> int:
        """Encode a day's reply ahead of time (the benchmark times the collator, not us)."""
        return len(self._day_records(day))

    async def on_request(self, msg: Any) -> None:
        self.requests_seen += 1
        try:
            request = UsageRequest.from_json(msg.data)
        except ProtocolError:
            logger.warning("event=sim_bad_usage_request node_id=%s", self.node_id)
            return
        payload = self.reply_bytes(request)
        # Without a reply subject the Go node publishes on dns.usage.usageData (§9.6).
        await self.nc.publish(msg.reply or SUBJECT_USAGE_DATA, payload)


@dataclass
class SimulatorOptions:
    nats_url: str
    dns_nodes: int = 2
    monitors: int = 3
    seed: int = 1
    records_per_node: int = 300
    outages_per_hour: float = 6.0
    outage_minutes: tuple[float, float] = (1.0, 20.0)
    duplicate_share: float = 0.5
    out_of_order_share: float = 0.1
    heartbeat_seconds: float = 90.0
    node_prefix: str = "SIM"


@dataclass
class PublishedOutage:
    target: CheckTarget
    start: datetime
    end: datetime
    offline_id: str
    online_id: str
    crossed: bool
    copies: int


class SimulatedNetwork:
    """N DNS nodes and M monitors, each a real NATS connection."""

    def __init__(
        self, options: SimulatorOptions, shape: NetworkShape, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.options = options
        self.shape = shape
        self.clock = clock or (lambda: datetime.now(UTC))
        self.rng = random.Random(options.seed)
        self.dns_nodes = [
            SimulatedDnsNode(
                f"{options.node_prefix}-DNS-{i + 1:02d}",
                shape,
                seed=options.seed,
                records=options.records_per_node,
                clock=self.clock,
            )
            for i in range(options.dns_nodes)
        ]
        self.monitor_ids = [f"{options.node_prefix}-MONITOR-{i + 1:02d}" for i in range(options.monitors)]
        self.monitor_ncs: list[Any] = []
        self.targets = shape.targets()
        self.published: list[PublishedOutage] = []
        self._tasks: list[asyncio.Task[Any]] = []

    async def _connect(self, name: str) -> Any:
        async def quiet_error(error: Exception) -> None:
            # nats-py logs every failed reconnect with a traceback unless given a callback; a
            # simulated peer only needs one line.
            logger.warning("event=simulator_nats_error peer=%s error=%r", name, str(error))

        return await nats.connect(
            servers=[self.options.nats_url],
            name=name,
            no_echo=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            error_cb=quiet_error,
        )

    async def start(self) -> None:
        for node in self.dns_nodes:
            node.nc = await self._connect(node.node_id)
            await node.nc.subscribe(SUBJECT_USAGE_REQUEST, cb=node.on_request, pending_bytes_limit=64 * 1024 * 1024)
            await node.nc.flush()
        for monitor_id in self.monitor_ids:
            self.monitor_ncs.append(await self._connect(monitor_id))
        peers = [(n.node_id, ROLE_DNS, n.nc) for n in self.dns_nodes]
        peers += [(m, ROLE_MONITOR, nc) for m, nc in zip(self.monitor_ids, self.monitor_ncs, strict=True)]
        for node_id, role, nc in peers:
            await nc.subscribe(SUBJECT_CLUSTER, cb=self._join_answerer(node_id, role, nc))
        await self.join_all()
        self._tasks.append(asyncio.create_task(self._heartbeat_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for nc in [node.nc for node in self.dns_nodes] + self.monitor_ncs:
            if nc is not None and not nc.is_closed:
                with contextlib.suppress(Exception):
                    await nc.drain()

    def _join_answerer(self, node_id: str, role: str, nc: Any) -> Callable[[Any], Any]:
        """Answer a newcomer's join with our own, as NEW peers do (§6.1)."""
        known: set[str] = set()

        async def on_cluster(msg: Any) -> None:
            try:
                sender = ClusterMessage.from_json(msg.data).sender.node_id
            except ProtocolError:
                return
            if sender and sender != node_id and sender not in known:
                known.add(sender)
                await nc.publish(
                    SUBJECT_CLUSTER, ClusterMessage.join(node_id=node_id, role=role, at=self.clock()).to_json()
                )

        return on_cluster

    async def join_all(self) -> None:
        now = self.clock()
        for node in self.dns_nodes:
            await node.nc.publish(
                SUBJECT_CLUSTER, ClusterMessage.join(node_id=node.node_id, role=ROLE_DNS, at=now).to_json()
            )
            await node.nc.flush()
        for monitor_id, nc in zip(self.monitor_ids, self.monitor_ncs, strict=True):
            await nc.publish(
                SUBJECT_CLUSTER, ClusterMessage.join(node_id=monitor_id, role=ROLE_MONITOR, at=now).to_json()
            )
            await nc.flush()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_seconds)
            await self.join_all()

    # --- outages -------------------------------------------------------------------------

    def plan_outage(self, start: datetime) -> PublishedOutage:
        low, high = self.options.outage_minutes
        minutes = self.rng.uniform(low, high)
        copies = 1
        if self.rng.random() < self.options.duplicate_share:
            copies = self.rng.randint(2, max(2, len(self.monitor_ids)))
        return PublishedOutage(
            target=self.rng.choice(self.targets),
            start=start,
            end=start + timedelta(minutes=minutes),
            offline_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            online_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            crossed=self.rng.random() < self.options.out_of_order_share,
            copies=min(copies, max(1, len(self.monitor_ids))),
        )

    def _proposal(self, outage: PublishedOutage, *, online: bool) -> Proposal:
        target = outage.target
        at = outage.end if online else outage.start
        data: dict[str, Any] | None = None
        error = ""
        if not online:
            error = {
                "ping": "PingCheck: avgRtt=912ms, loss=40%",
                "ssl": "SSL certificate expires in 3 days",
                "wss": "Syncing or not enough peers",
                "ethrpc": "eth_syncing returned true",
            }.get(target.check_name, "check failed")
            if target.check_name == "ping":
                data = {"AvgRtt": 912.0, "MaxRtt": 1544.0, "MinRtt": 301.0, "PacketLoss": 40.0, "StdDevRtt": 210.5}
        return Proposal(
            id=outage.online_id if online else outage.offline_id,
            sender_node_id=self.monitor_ids[0],
            check_type=target.check_type,
            check_name=target.check_name,
            member_name=target.member_name,
            domain_name=target.domain_name,
            endpoint=target.endpoint,
            proposed_status=online,
            error_text=error,
            data=data,
            is_ipv6=False,
            timestamp=GoTime.from_datetime(at - timedelta(seconds=1)),
        )

    async def _decide(self, outage: PublishedOutage, *, online: bool) -> None:
        proposal = self._proposal(outage, online=online)
        at = outage.end if online else outage.start
        proposer = self.monitor_ncs[0]
        await proposer.publish(SUBJECT_PROPOSE, proposal.to_json())
        for monitor_id, nc in zip(self.monitor_ids, self.monitor_ncs, strict=True):
            vote = Vote(
                proposal_id=proposal.id,
                sender_node_id=monitor_id,
                node_id=monitor_id,
                agree=True,
                timestamp=GoTime.from_datetime(at - timedelta(milliseconds=500)),
            )
            await nc.publish(SUBJECT_VOTE, vote.to_json())
        # Each deciding monitor publishes its own finalize, a few ms apart (§7).
        for copy in range(outage.copies):
            decided = GoTime.from_datetime(at + timedelta(milliseconds=37 * copy))
            message = FinalizeMessage(proposal=proposal, passed=True, decided_at=decided)
            await self.monitor_ncs[copy % len(self.monitor_ncs)].publish(SUBJECT_FINALIZE, message.to_json())
        for nc in self.monitor_ncs:
            await nc.flush()

    async def publish_outage(self, outage: PublishedOutage) -> None:
        """Publish an outage's offline and online decisions (crossed ones online first)."""
        order = (True, False) if outage.crossed else (False, True)
        for online in order:
            await self._decide(outage, online=online)
        self.published.append(outage)

    async def publish_backfill_month(self, year: int, month: int, *, per_day: float | None = None) -> int:
        """Outages with past DecidedAt spread over a month, published at once."""
        first = datetime(year, month, 1, tzinfo=UTC)
        # This month's backfill stops at now: a DecidedAt ahead of the collator is refused.
        following = min(datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC), self.clock())
        rate = (self.options.outages_per_hour * 24) if per_day is None else per_day
        moment = first
        count = 0
        while True:
            moment += timedelta(days=self.rng.expovariate(rate)) if rate > 0 else following - first
            if moment >= following:
                break
            outage = self.plan_outage(moment)
            if outage.end >= following:
                continue
            await self.publish_outage(outage)
            count += 1
        return count

    async def run_outages(self, *, duration: float | None) -> None:
        """Live outages at `outages_per_hour`, each recovering after its planned length."""
        loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        pending: set[asyncio.Task[None]] = set()
        rate = self.options.outages_per_hour / 3600.0
        try:
            while deadline is None or loop.time() < deadline:
                wait = self.rng.expovariate(rate) if rate > 0 else 3600.0
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - loop.time()))
                await asyncio.sleep(wait)
                if deadline is not None and loop.time() >= deadline:
                    break
                outage = self.plan_outage(self.clock())
                pending.add(asyncio.create_task(self._live_outage(outage)))
                pending = {t for t in pending if not t.done()}
        finally:
            # Stopping the simulated network ends its outages: each open one recovers now,
            # so that a stopped demo leaves none open for ever.
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _live_outage(self, outage: PublishedOutage) -> None:
        if outage.crossed:
            # Crossed messages: both decisions are published together, online first, once
            # the outage is over. Published at its start, the online's DecidedAt would lie in
            # the future, which no monitor sends and the collator refuses (decided_in_future).
            try:
                await asyncio.sleep((outage.end - outage.start).total_seconds())
            finally:
                outage.end = self.clock()
                with contextlib.suppress(Exception):  # the connection may be gone at shutdown
                    await self.publish_outage(outage)
            return
        await self._decide(outage, online=False)
        try:
            await asyncio.sleep((outage.end - outage.start).total_seconds())
        finally:
            outage.end = self.clock()
            with contextlib.suppress(Exception):  # the connection may be gone at shutdown
                await self._decide(outage, online=True)
            self.published.append(outage)


def outage_summary(outages: Sequence[PublishedOutage]) -> dict[str, int]:
    return {
        "outages": len(outages),
        "crossed": sum(1 for o in outages if o.crossed),
        "finalize_copies": sum(o.copies * 2 for o in outages),
    }
