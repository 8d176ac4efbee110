"""Helpers for the NATS tests: a started listener and scripted peers, all on a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import nats

from metrics.listener import ListenerConfig, NatsListener
from metrics.protocol import ROLE_DNS, SUBJECT_CLUSTER, SUBJECT_USAGE_REQUEST, ClusterMessage, UsageRequest
from metrics.services import whole_seconds


def listener_config(url: str, **overrides: Any) -> ListenerConfig:
    values: dict[str, Any] = {
        "node_id": "COLLATOR-TEST",
        "servers": (url,),
        "collect_usage_hourly": False,
        "node_flush_seconds": 0.2,
        "reply_timeout": 5.0,
    }
    values.update(overrides)
    return ListenerConfig(**values)


class SettableClock:
    """An injectable clock. (time-machine would also freeze time.monotonic, and with it the
    event loop's timers.)"""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def with_listener(
    url: str,
    body: Callable[[NatsListener], Awaitable[Any]],
    *,
    clock: Callable[[], datetime] | None = None,
    **overrides: Any,
) -> Any:
    listener = NatsListener(listener_config(url, **overrides), **({"clock": clock} if clock else {}))
    await listener.start()
    try:
        return await body(listener)
    finally:
        await listener.stop()


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def wait_until_db(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """wait_until for a predicate that reads the DB (which needs a thread, not the loop)."""
    from django.db import connection

    def check() -> bool:
        try:
            return predicate()
        finally:
            connection.close()

    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def peer(url: str, name: str) -> Any:
    return await nats.connect(servers=[url], name=name, no_echo=True)


class ScriptedDnsNode:
    """A DNS node that answers each usage request with the bytes a function gives for its day."""

    def __init__(self, node_id: str, answer: Callable[[str], bytes | None]) -> None:
        self.node_id = node_id
        self.answer = answer
        self.nc: Any = None
        self.requests: list[str] = []

    async def start(self, url: str) -> None:
        from datetime import UTC, datetime

        self.nc = await peer(url, self.node_id)

        async def on_request(msg: Any) -> None:
            day = UsageRequest.from_json(msg.data).start_date
            self.requests.append(day)
            payload = self.answer(day)
            if payload is not None:
                await self.nc.publish(msg.reply, payload)

        await self.nc.subscribe(SUBJECT_USAGE_REQUEST, cb=on_request)
        join = ClusterMessage.join(node_id=self.node_id, role=ROLE_DNS, at=whole_seconds(datetime.now(UTC)))
        await self.nc.publish(SUBJECT_CLUSTER, join.to_json())
        await self.nc.flush()

    async def stop(self) -> None:
        await self.nc.drain()


def usage_reply(node_id: str, records: list[dict[str, Any]]) -> bytes:
    """A reply in the Go field order (the decoder does not care about order, Go peers do not either)."""
    from metrics.protocol import UsageRecord, UsageResponse

    rows = tuple(
        UsageRecord(
            date=r.get("date", ""),
            domain=r.get("domain", ""),
            member_name=r.get("member", ""),
            country_code=r.get("code", ""),
            asn=r.get("asn", ""),
            network_name=r.get("network", ""),
            country_name=r.get("country", ""),
            hits=r["hits"],
            is_ipv6=r.get("ipv6", False),
        )
        for r in records
    )
    return UsageResponse(node_id=node_id, usage_records=rows).to_json()
