"""The production broker and cache: Redis (README "Production", deploy/collator.env).

The `redis` client was missing from the requirements, so a worker with
`CELERY_BROKER_URL=redis://…` died at start (`'NoneType' object has no attribute 'Redis'`)
and the throttle, sharing that Redis, was skipped. These run against the machine's Redis
(.ci/run starts it); database 15 is used and emptied.
"""

from __future__ import annotations

import socket
import uuid

import pytest
from django.core.cache.backends.redis import RedisCache
from kombu import Connection, Exchange, Queue

from collator.celery import app

REDIS_URL = "redis://127.0.0.1:6379/15"


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")


def test_it_sends_and_receives_a_task_message_through_the_redis_broker() -> None:
    queue = Queue(f"collator-test-{uuid.uuid4().hex[:8]}", Exchange("collator-test"), routing_key="t")
    with Connection(REDIS_URL) as connection:
        producer = connection.Producer()
        producer.publish({"task": "ping"}, exchange=queue.exchange, routing_key="t", declare=[queue])
        received: list[dict] = []
        with connection.Consumer(queue, callbacks=[lambda body, message: (received.append(body), message.ack())]):
            connection.drain_events(timeout=5)
        queue(connection.channel()).delete()
    assert received == [{"task": "ping"}]
    assert app.connection_for_write(REDIS_URL).transport_cls == "redis"


def test_it_keeps_the_throttle_counts_in_a_redis_cache() -> None:
    cache = RedisCache(REDIS_URL, {})
    key = f"collator-test-{uuid.uuid4().hex[:8]}"
    cache.set(key, 3, timeout=10)
    assert cache.incr(key) == 4
    cache.delete(key)
